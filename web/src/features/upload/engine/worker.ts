/// <reference lib="webworker" />
/**
 * The engine's Web Worker: hashing and chunk I/O stay off the main thread, so the page scrolls
 * smoothly while a 2 GB study goes out. One tab's worker runs the queue at a time (a Web Lock):
 * two tabs sending the same chunks would only waste the link.
 */
import { env } from '@/config/env';

import { dexieJobStore, RelayDatabase } from './db';
import { UploadEngine } from './engine';
import { md5Base64 } from './md5';
import { httpTransport } from './transport';
import type { EngineCommand, EngineEvent } from './types';

declare const self: DedicatedWorkerGlobalScope;

const post = (event: EngineEvent): void => self.postMessage(event);

const engine = new UploadEngine({
  transport: httpTransport({ apiBase: new URL(env.apiBase, self.location.origin).href.replace(/\/$/, ''), stallTimeoutMs: env.stallTimeoutMs }),
  store: dexieJobStore(new RelayDatabase()),
  md5: md5Base64,
  parallel: env.parallelChunks,
  emit: post,
});

let leader = false;
const early: EngineCommand[] = [];

self.onmessage = (message: MessageEvent<EngineCommand>) => {
  const command = message.data;
  if (!leader && command.type !== 'online' && command.type !== 'token' && command.type !== 'start') {
    early.push(command);
    return;
  }
  if (command.type === 'start') {
    void becomeLeader(command);
    return;
  }
  void engine.handle(command);
};

async function becomeLeader(start: EngineCommand & { type: 'start' }): Promise<void> {
  if (leader) return;
  post({ type: 'snapshot', jobs: [], standby: true });
  const run = async (): Promise<void> => {
    leader = true;
    await engine.handle(start);
    for (const command of early.splice(0)) await engine.handle(command);
    // Hold the lock for the worker's whole life; it is released when the tab goes away.
    await new Promise<never>(() => undefined);
  };
  if ('locks' in navigator) await navigator.locks.request('relaypacs-upload-engine', run);
  else await run();
}
