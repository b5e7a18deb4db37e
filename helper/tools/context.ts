/**
 * ~/SANDBOX_CONTEXT.md: the facts of this sandbox, written at every launch so
 * the agent knows where it is and what it may do. Pure: facts in, markdown out.
 * Names of forwarded variables only, never their values.
 */
export interface SandboxFacts {
  container: string;
  tool: string;
  workspace: string;
  persistent: boolean;
  network: { mode: string; allowedDomains: string[] };
  limits: { cpu?: string; memory?: string; maxDuration?: string; maxProcesses?: number };
  forwardedEnv: string[];
  readOnlyPaths: string[];
  sshAgent: boolean;
  docker: boolean;
  permissionMode: 'bypass' | 'interactive';
  profile: string;
  profileContexts: { profile: string; text: string }[];
}

export function sandboxContext(f: SandboxFacts): string {
  const network =
    f.network.mode === 'open'
      ? 'open: no filtering.'
      : f.network.mode === 'allowlist'
        ? `allowlist: only ${f.network.allowedDomains.length ? f.network.allowedDomains.join(', ') : 'nothing'} can be reached; names are pre-resolved in /etc/hosts and DNS is blocked.`
        : 'restricted: the internet is reachable; private networks (10/8, 172.16/12, 192.168/16), link-local and cloud metadata addresses, CGNAT and the host are not.';
  const limits = [
    f.limits.cpu ? `${f.limits.cpu} CPUs` : undefined,
    f.limits.memory ? `${f.limits.memory} memory (processes past it are killed)` : undefined,
    f.limits.maxProcesses ? `at most ${f.limits.maxProcesses} processes` : undefined,
    f.limits.maxDuration ? `the sandbox is stopped after ${f.limits.maxDuration}` : undefined,
  ].filter(Boolean);
  const lines = [
    '# Sandbox context',
    '',
    `You are ${f.tool} running inside a COI sandbox: an Incus system container (${f.container}) that is the security boundary. Work autonomously inside it${f.permissionMode === 'bypass' ? '; you do not need to ask before running commands' : ''}.`,
    '',
    '## Environment',
    `- Workspace: ${f.workspace} (the user's project, shared with the host; changes there persist and the user sees them).`,
    '- User: code (uid 1000), home /home/code, passwordless sudo.',
    `- Container: ${f.persistent ? 'persistent — what you install outside the workspace is kept for the next session' : 'ephemeral — everything outside the workspace is deleted when the session ends'}.`,
    `- Network: ${network}`,
    `- SSH agent: ${f.sshAgent ? 'forwarded (SSH_AUTH_SOCK); no keys are inside' : 'not available; no SSH keys are inside'}.`,
    `- Docker: ${f.docker ? 'available' : 'not available'}.`,
    `- Forwarded environment variables: ${f.forwardedEnv.length ? f.forwardedEnv.join(', ') : 'none'}.`,
    `- Limits: ${limits.length ? limits.join('; ') : 'none set'}.`,
    '',
    '## Read-only paths',
    ...(f.readOnlyPaths.length
      ? [`These workspace paths are mounted read-only, because the host runs them later (hooks, editor tasks); writes fail on purpose: ${f.readOnlyPaths.join(', ')}.`]
      : ['None.']),
    '',
    '## Reaching the user',
    'The user watches this session in their terminal or editor. Ask in the conversation; leave files for them in the workspace.',
    '',
    '## Notes',
    '- Files you create with sudo belong to root; give them back with `sudo chown -R code:code <path>`.',
    '- A security monitor may freeze or stop this sandbox if it sees reverse shells, credential scanning or exfiltration.',
  ];
  for (const c of f.profileContexts) {
    if (!c.text.trim()) continue;
    lines.push('', `## From profile ${c.profile}`, '', c.text.trim());
  }
  return `${lines.join('\n')}\n`;
}
