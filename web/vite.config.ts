import { fileURLToPath, URL } from 'node:url';

import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';
import { VitePWA } from 'vite-plugin-pwa';

// Paths the gateway serves itself: the service worker must never answer them from the shell.
const SERVER_PATHS = [
  /^\/api\//,
  /^\/docs/,
  /^\/redoc/,
  /^\/openapi\.json/,
  /^\/metrics/,
  /^\/healthz/,
  /^\/readyz/,
  /^\/\.well-known\//,
];

export default defineConfig({
  resolve: {
    alias: { '@': fileURLToPath(new URL('./src', import.meta.url)) },
  },
  worker: { format: 'es' },
  // The shell (~180 kB gzipped) is precached once by the service worker, then served offline.
  build: { target: 'es2022', sourcemap: true, chunkSizeWarningLimit: 700 },
  server: {
    proxy: {
      '/api': process.env.RELAYPACS_API ?? 'http://127.0.0.1:8080',
      '/.well-known': process.env.RELAYPACS_API ?? 'http://127.0.0.1:8080',
      '/healthz': process.env.RELAYPACS_API ?? 'http://127.0.0.1:8080',
    },
  },
  plugins: [
    react(),
    VitePWA({
      registerType: 'prompt',
      injectRegister: false,
      includeAssets: ['favicon.svg', 'icons/apple-touch-icon.png'],
      manifest: {
        name: 'RelayPACS',
        short_name: 'RelayPACS',
        description: 'Send DICOM studies to the reading centre over any network.',
        id: '/',
        start_url: '/',
        scope: '/',
        display: 'standalone',
        orientation: 'any',
        background_color: '#f6f8fa',
        theme_color: '#0b5cad',
        categories: ['medical', 'productivity'],
        icons: [
          { src: '/icons/icon-192.png', sizes: '192x192', type: 'image/png', purpose: 'any' },
          { src: '/icons/icon-512.png', sizes: '512x512', type: 'image/png', purpose: 'any' },
          {
            src: '/icons/maskable-512.png',
            sizes: '512x512',
            type: 'image/png',
            purpose: 'maskable',
          },
        ],
      },
      workbox: {
        globPatterns: ['**/*.{js,css,html,svg,png,wasm,webmanifest}'],
        navigateFallback: '/index.html',
        navigateFallbackDenylist: SERVER_PATHS,
        cleanupOutdatedCaches: true,
        // The first visit is controlled at once, so the engine's worker script and the shell
        // come from the cache if the network drops before the next navigation.
        clientsClaim: true,
        // Background Sync wake-up (open pages resume queued uploads); a notification click
        // focuses the app on the notification's page.
        importScripts: ['/sw-sync.js', '/sw-notifications.js'],
        maximumFileSizeToCacheInBytes: 4 * 1024 * 1024,
      },
    }),
  ],
});
