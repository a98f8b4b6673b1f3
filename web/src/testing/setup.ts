// A real IndexedDB implementation (in memory) for the queue-persistence tests.
import 'fake-indexeddb/auto';
