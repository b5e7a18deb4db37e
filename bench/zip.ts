/**
 * What a zip (a .vsix) holds, uncompressed: the sum of its central
 * directory's sizes, so the .vsix figure compares the download with exactly
 * the files in it, whatever build left them in dist/.
 */
const EOCD = 0x06054b50;
const CENTRAL = 0x02014b50;

export function zipContentBytes(zip: Buffer): { files: number; bytes: number } {
  // The end record is last, after a comment of at most 64 KiB.
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (zip.readUInt32LE(i) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('not a zip: no end of central directory');
  const files = zip.readUInt16LE(eocd + 10);
  let off = zip.readUInt32LE(eocd + 16);
  let bytes = 0;
  for (let n = 0; n < files; n++) {
    if (off + 46 > zip.length || zip.readUInt32LE(off) !== CENTRAL) throw new Error(`not a zip: central directory entry ${n} is broken`);
    bytes += zip.readUInt32LE(off + 24);
    off += 46 + zip.readUInt16LE(off + 28) + zip.readUInt16LE(off + 30) + zip.readUInt16LE(off + 32);
  }
  return { files, bytes };
}
