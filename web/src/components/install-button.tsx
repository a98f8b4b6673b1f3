import { useInstallPrompt } from '@/hooks/use-install-prompt';

export function InstallButton() {
  const { canInstall, install } = useInstallPrompt();
  if (!canInstall) return null;
  return (
    <button type="button" className="button button--ghost" onClick={() => void install()}>
      Install app
    </button>
  );
}
