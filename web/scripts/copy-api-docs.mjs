// Copies Swagger UI's assets next to the built app, so that the gateway's /docs works on a
// hospital network with no internet (FastAPI's default loads them from a CDN). Runs after
// `vite build`: the service worker does not precache them (the app never needs them offline).
import { copyFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const source = dirname(require.resolve('swagger-ui-dist/package.json'));
const target = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'api-docs');

mkdirSync(target, { recursive: true });
for (const name of ['swagger-ui-bundle.js', 'swagger-ui.css', 'favicon-32x32.png', 'LICENSE', 'NOTICE']) {
  copyFileSync(join(source, name), join(target, name));
}
