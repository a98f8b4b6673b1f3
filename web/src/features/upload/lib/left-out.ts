/**
 * Files (or ZIP entries) the gateway checked and could not use: they never reach the PACS, so the
 * person who sent the study must hear of each one, by name, with the reason in plain words.
 */
import type { ServerFileStatus } from '../engine/protocol';

export interface LeftOutFile {
  /** the file's name, or "archive.zip / entry" for an entry of a ZIP */
  name: string;
  reason: string;
}

/** The gateway's reason (it speaks to integrators too), led by what it means for the study. */
export function describeFileProblem(reason: string): string {
  const said = reason.trim();
  if (said === '') return 'it could not be read';
  if (/^not DICOM/i.test(said)) return 'not a DICOM image';
  if (/^truncated or malformed/i.test(said)) return `the file is damaged or incomplete (${said})`;
  if (/^missing or malformed/i.test(said)) return `details every DICOM image needs are missing (${said})`;
  return said;
}

export function leftOutFiles(files: readonly ServerFileStatus[]): LeftOutFile[] {
  return files.flatMap((file): LeftOutFile[] => {
    const name = file.name ?? 'A file';
    // "skipped" is an index (a DICOMDIR), not an image: nothing of the study is missing.
    const invalid = (file.problems ?? []).filter((problem) => problem.status !== 'skipped');
    if (invalid.length > 0) {
      return invalid.map((problem) => ({
        name: problem.entry ? `${name} / ${problem.entry}` : name,
        reason: describeFileProblem(problem.reason),
      }));
    }
    return file.status === 'invalid' ? [{ name, reason: describeFileProblem('') }] : [];
  });
}

function files(count: number): string {
  return count === 1 ? '1 file' : `${count} files`;
}

/**
 * One line on what was left out, for the state the study is in; null when nothing was.
 * With plain files it counts them ("3 of 4 files delivered — 1 left out"); entries of a ZIP
 * cannot be counted against the files sent, so then only the left-out ones are.
 */
export function leftOutHeadline(state: string, all: readonly ServerFileStatus[]): string | null {
  const leftOut = leftOutFiles(all);
  if (leftOut.length === 0) return null;
  const fromZip = leftOut.some((item) => item.name.includes(' / '));
  const total = all.filter((file) => file.status !== 'skipped').length;
  const used = total - leftOut.length;
  if (state === 'rejected') {
    return fromZip || total !== leftOut.length
      ? `${files(leftOut.length)} could not be used, and nothing was sent to the PACS`
      : total === 1
        ? 'The file could not be used, so nothing was sent to the PACS'
        : `None of the ${total} files could be used, so nothing was sent to the PACS`;
  }
  if (state === 'delivered') {
    return fromZip
      ? `Delivered — but ${files(leftOut.length)} could not be used and ${leftOut.length === 1 ? 'was' : 'were'} left out`
      : `${used} of ${total} files delivered — ${leftOut.length} left out`;
  }
  return fromZip
    ? `${files(leftOut.length)} could not be used and will not reach the PACS`
    : `${leftOut.length} of ${total} files could not be used and will not reach the PACS`;
}
