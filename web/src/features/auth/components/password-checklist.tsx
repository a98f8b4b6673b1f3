import { PASSWORD_RULES, passwordStrength, STRENGTH_LABELS } from '../lib/password-rules';

/** Live rule checklist and strength meter; screen readers get the summary, not every keystroke. */
export function PasswordChecklist({ id, password, username }: { id: string; password: string; username: string }) {
  const strength = passwordStrength(password);
  const unmet = PASSWORD_RULES.filter((rule) => !rule.test(password, username)).length;
  return (
    <div id={id} className="checklist">
      <div className="strength" data-strength={strength}>
        <div className="strength__track" aria-hidden="true">
          {[0, 1, 2, 3].map((i) => (
            <span key={i} className={i < strength ? 'strength__bar strength__bar--on' : 'strength__bar'} />
          ))}
        </div>
        <span className="strength__label">Strength: {password === '' ? '—' : STRENGTH_LABELS[strength]}</span>
      </div>
      <ul className="rules">
        {PASSWORD_RULES.map((rule) => {
          const ok = password !== '' && rule.test(password, username);
          return (
            <li key={rule.id} className={ok ? 'rule rule--ok' : 'rule'}>
              <span aria-hidden="true">{ok ? '✓' : '•'}</span> {rule.label}
              <span className="visually-hidden">{ok ? ' (met)' : ' (not yet met)'}</span>
            </li>
          );
        })}
      </ul>
      <p className="visually-hidden" aria-live="polite">
        {password === '' ? '' : unmet === 0 ? 'All password rules met.' : `${unmet} password rules not yet met.`}
      </p>
    </div>
  );
}
