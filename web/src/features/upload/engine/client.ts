/**
 * The main thread's handle on the engine worker: commands go in, snapshots come out, and the
 * worker is kept supplied with the network state and a fresh sign-in token.
 */
import type { EngineCommand, EngineEvent, JobView } from './types';

export interface EngineSnapshot {
  jobs: JobView[];
  /** another tab runs the queue; this one waits its turn */
  standby: boolean;
  ready: boolean;
}

type Listener = () => void;

export class EngineClient {
  private snapshotValue: EngineSnapshot = { jobs: [], standby: false, ready: false };
  private readonly listeners = new Set<Listener>();
  private readonly submittedListeners = new Set<(jobId: string, serverId: string) => void>();

  constructor(
    private readonly worker: Pick<Worker, 'postMessage' | 'addEventListener'>,
    private readonly onNeedToken: () => void,
  ) {
    worker.addEventListener('message', (message: MessageEvent<EngineEvent>) => this.receive(message.data));
  }

  send(command: EngineCommand): void {
    this.worker.postMessage(command);
  }

  get snapshot(): EngineSnapshot {
    return this.snapshotValue;
  }

  subscribe = (listener: Listener): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  onSubmitted(listener: (jobId: string, serverId: string) => void): () => void {
    this.submittedListeners.add(listener);
    return () => this.submittedListeners.delete(listener);
  }

  private receive(event: EngineEvent): void {
    switch (event.type) {
      case 'snapshot':
        this.snapshotValue = { jobs: event.jobs, standby: event.standby, ready: !event.standby };
        for (const listener of this.listeners) listener();
        return;
      case 'need-token':
        this.onNeedToken();
        return;
      case 'submitted':
        for (const listener of this.submittedListeners) listener(event.jobId, event.serverId);
        return;
    }
  }
}
