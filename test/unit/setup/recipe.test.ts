import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { aptMirror, baseImageRecipe, imageMetadata } from '../../../helper/setup/image-recipe';
import { incusInstallPlan, parseOsRelease } from '../../../helper/setup/install';

test('the recipe hash is stable and changes with the mirror-independent content only', () => {
  const a = baseImageRecipe('http://a/debian');
  const b = baseImageRecipe('http://b/debian');
  assert.equal(a.hash, b.hash, 'the mirror does not change what is built');
  assert.equal(a.hash, baseImageRecipe('http://a/debian').hash);
  assert.notEqual(a.hash, baseImageRecipe('http://a/debian', 'trixie').hash);
  assert.ok(a.packages.includes('tmux') && a.packages.includes('sudo') && a.packages.includes('systemd-sysv'));
  assert.match(a.customise, /useradd -m -u 1000 -g 1000/);
});

test('image metadata names the recipe so set-up can tell a stale image', () => {
  const r = baseImageRecipe('http://m/debian');
  const md = imageMetadata(r, new Date(1_000_000_000_000));
  assert.match(md, /^architecture: x86_64$/m);
  assert.match(md, /^creation_date: 1000000000$/m);
  assert.match(md, new RegExp(`coi.recipe: "${r.hash}"`));
});

test('aptMirror: env first, then the host deb822 or one-line sources, else deb.debian.org', () => {
  assert.equal(aptMirror({ COI_APT_MIRROR: 'http://m/x' }, []), 'http://m/x');
  const deb822 = 'Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://sec/debian-security\nSuites: bookworm-security\n';
  assert.equal(aptMirror({}, [deb822]), 'http://mirror.example/debian');
  assert.equal(aptMirror({}, ['deb [arch=amd64] http://old.example/debian bookworm main\n']), 'http://old.example/debian');
  assert.equal(aptMirror({}, ['deb http://x/ubuntu noble main']), 'http://deb.debian.org/debian');
});

test('Incus install: backports on Debian 12, the archive on Ubuntu, a clear refusal elsewhere', () => {
  const deb = incusInstallPlan(parseOsRelease('ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'), 'http://m/debian');
  assert.match(deb.source!.content, /Suites: bookworm-backports/);
  assert.match(deb.source!.content, /URIs: http:\/\/m\/debian/);
  assert.ok(deb.apt.some((a) => a.includes('-t') && a.includes('bookworm-backports') && a.includes('incus-base')));
  const ubu = incusInstallPlan(parseOsRelease('ID=ubuntu\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\n'), 'x');
  assert.equal(ubu.source, undefined);
  assert.ok(ubu.apt.some((a) => a.includes('incus-base')));
  assert.throws(() => incusInstallPlan(parseOsRelease('ID=fedora\nVERSION_ID=40\n'), 'x'), /Debian and Ubuntu, not fedora 40/);
});
