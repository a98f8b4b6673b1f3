import { useRef, useState, type DragEvent } from 'react';

export interface PickedFile {
  file: File;
  /** relative path inside the chosen folder, or the file name */
  name: string;
}

async function entriesOf(entry: FileSystemEntry, prefix: string): Promise<PickedFile[]> {
  if (entry.isFile) {
    const file = await new Promise<File>((resolve, reject) => (entry as FileSystemFileEntry).file(resolve, reject));
    return [{ file, name: `${prefix}${entry.name}` }];
  }
  const reader = (entry as FileSystemDirectoryEntry).createReader();
  const children: FileSystemEntry[] = [];
  // readEntries returns at most ~100 entries per call: read until it returns none.
  for (;;) {
    const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
    if (batch.length === 0) break;
    children.push(...batch);
  }
  const nested = await Promise.all(children.map((child) => entriesOf(child, `${prefix}${entry.name}/`)));
  return nested.flat();
}

/** Files, a whole folder, or a ZIP; drag and drop on a desktop, the system picker on a phone. */
export function FilePicker({ onPick, disabled }: { onPick: (files: PickedFile[]) => void; disabled?: boolean }) {
  const filesRef = useRef<HTMLInputElement>(null);
  const folderRef = useRef<HTMLInputElement>(null);
  const [dragging, setDragging] = useState(false);

  const fromInput = (list: FileList | null): void => {
    if (!list || list.length === 0) return;
    onPick(Array.from(list, (file) => ({ file, name: file.webkitRelativePath || file.name })));
  };

  const onDrop = async (event: DragEvent): Promise<void> => {
    event.preventDefault();
    setDragging(false);
    const items = Array.from(event.dataTransfer.items);
    const entries = items.map((item) => item.webkitGetAsEntry()).filter((e): e is FileSystemEntry => e !== null);
    if (entries.length > 0) {
      onPick((await Promise.all(entries.map((entry) => entriesOf(entry, '')))).flat());
    } else {
      fromInput(event.dataTransfer.files);
    }
  };

  return (
    <div
      className={dragging ? 'picker picker--dragging' : 'picker'}
      onDragOver={(e) => {
        e.preventDefault();
        setDragging(true);
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={(e) => void onDrop(e)}
    >
      <p className="picker__hint">Choose the study's DICOM files, its folder, or a ZIP of it — or drop them here.</p>
      <div className="picker__buttons">
        <button type="button" className="button button--primary" disabled={disabled} onClick={() => filesRef.current?.click()}>
          Choose files or ZIP
        </button>
        <button type="button" className="button" disabled={disabled} onClick={() => folderRef.current?.click()}>
          Choose a folder
        </button>
      </div>
      <p className="picker__note muted">
        The files stay on this device until the reading centre has every byte: you can lose the network, close the
        app or restart the phone, and the upload carries on where it stopped once the app is open again.
      </p>
      <input
        ref={filesRef}
        type="file"
        multiple
        hidden
        data-testid="pick-files"
        aria-label="Choose files or ZIP"
        onChange={(e) => {
          fromInput(e.target.files);
          e.target.value = '';
        }}
      />
      <input
        ref={folderRef}
        type="file"
        hidden
        data-testid="pick-folder"
        aria-label="Choose a folder"
        {...{ webkitdirectory: '', directory: '' }}
        onChange={(e) => {
          fromInput(e.target.files);
          e.target.value = '';
        }}
      />
    </div>
  );
}
