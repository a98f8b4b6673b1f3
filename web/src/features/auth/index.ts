// The auth feature's public surface, for the app layer.
export { AuthProvider, useAuth } from './hooks/auth-context';
export { RegisterPage } from './components/register-page';
export { SignInPage } from './components/sign-in-page';
export { TwoFactorPanel } from './components/two-factor-panel';
export type { User } from './api/auth';
