// The auth feature's public surface, for the app layer.
export { AuthProvider, useAuth } from './hooks/auth-context';
export { ChangePasswordPanel } from './components/change-password-panel';
export { ChoosePasswordPage } from './components/choose-password-page';
export { RegisterPage } from './components/register-page';
export { SignInPage } from './components/sign-in-page';
export { TwoFactorPanel } from './components/two-factor-panel';
export type { User } from './api/auth';
