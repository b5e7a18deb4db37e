import { strict as assert } from 'node:assert';
import { deflateRawSync } from 'node:zlib';
import { test } from 'node:test';
import { zipContentBytes } from '../../../bench/zip';

/** A zip as vsce writes one: deflated entries, a central directory, the end record (with a comment). */
function zip(files: Record<string, string>, comment = ''): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, text] of Object.entries(files)) {
    const data = deflateRawSync(Buffer.from(text));
    const n = Buffer.from(name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(Buffer.byteLength(text), 22);
    local.writeUInt16LE(n.length, 26);
    locals.push(local, n, data);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(8, 10);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(Buffer.byteLength(text), 24);
    central.writeUInt16LE(n.length, 28);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, n);
    offset += 30 + n.length + data.length;
  }
  const dir = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Object.keys(files).length, 8);
  end.writeUInt16LE(Object.keys(files).length, 10);
  end.writeUInt32LE(dir.length, 12);
  end.writeUInt32LE(offset, 16);
  end.writeUInt16LE(comment.length, 20);
  return Buffer.concat([...locals, dir, end, Buffer.from(comment)]);
}

test('a zip\'s content is the sum of its files uncompressed, found from the end record even behind a comment', () => {
  const files = { 'extension/dist/helper-main.js': 'x'.repeat(10_000), 'extension/package.json': '{"name":"coi"}', 'extension.vsixmanifest': '<m/>' };
  assert.deepEqual(zipContentBytes(zip(files)), { files: 3, bytes: 10_000 + 14 + 4 });
  assert.deepEqual(zipContentBytes(zip(files, 'made by a test')), { files: 3, bytes: 10_018 });
});

test('what is not a zip, or a cut one, is an error that says so', () => {
  assert.throws(() => zipContentBytes(Buffer.from('hello, this is plain text and no zip at all')), /no end of central directory/);
  const z = zip({ a: 'aaaa', b: 'bbbb' });
  const cut = Buffer.concat([z.subarray(0, 40), z.subarray(z.length - 22)]);
  assert.throws(() => zipContentBytes(cut), /central directory entry 0 is broken/);
});
