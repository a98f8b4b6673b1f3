/** A ZIP of a study, opened in the browser so its DICOM files can be checked and sent one by one. */
import { unzip, type Unzipped } from 'fflate';

function unzipAsync(data: Uint8Array): Promise<Unzipped> {
  return new Promise((resolve, reject) => {
    unzip(data, (error, files) => {
      if (error) reject(error);
      else resolve(files);
    });
  });
}

export function isZip(file: File): boolean {
  return file.type === 'application/zip' || file.type === 'application/x-zip-compressed' || /\.zip$/i.test(file.name);
}

/** Entries of the archive as files named "archive.zip/inner/path"; folders and macOS debris left out. */
export async function expandZip(archive: File, name: string = archive.name): Promise<{ file: File; name: string }[]> {
  const entries = await unzipAsync(new Uint8Array(await archive.arrayBuffer()));
  return Object.entries(entries)
    .filter(([path]) => !path.endsWith('/') && !path.startsWith('__MACOSX/'))
    .map(([path, bytes]) => {
      const base = path.split('/').pop() ?? path;
      return {
        file: new File([bytes], base, { type: 'application/dicom' }),
        name: `${name}/${path}`,
      };
    });
}
