// A tiny classic-BPF seccomp filter that refuses the kernel keyring syscalls.
// Without it a bwrap sandbox inherits the host session keyring (`keyctl print @s`
// works inside), where keyutils-backed stores keep secrets. Docker's default
// profile blocks the same three calls.

/** struct sock_filter: u16 code, u8 jt, u8 jf, u32 k (host endianness; both arches below are little-endian). */
const SOCK_FILTER_BYTES = 8
const BPF_LD_W_ABS = 0x20
const BPF_JMP_JEQ_K = 0x15
const BPF_JMP_JGE_K = 0x35
const BPF_RET_K = 0x06
/** Offsets into struct seccomp_data. */
const SECCOMP_DATA_NR_OFFSET = 0
const SECCOMP_DATA_ARCH_OFFSET = 4
const SECCOMP_RET_ALLOW = 0x7fff_0000
const SECCOMP_RET_ERRNO = 0x0005_0000
const EPERM = 1
/** x32 syscalls run under AUDIT_ARCH_X86_64 with this bit set; nothing legitimate uses them. */
const X32_SYSCALL_BIT = 0x4000_0000

interface ArchRule {
  audit: number
  /** add_key, request_key, keyctl. */
  syscalls: readonly number[]
  denyAtOrAbove?: number
}

const AUDIT_ARCH_X86_64 = 0xc000_003e
const AUDIT_ARCH_I386 = 0x4000_0003
const AUDIT_ARCH_AARCH64 = 0xc000_00b7
const AUDIT_ARCH_ARM = 0x4000_0028

// Each native arch also lists its 32-bit compat arch: a process may switch ABIs to dodge a filter.
const X86_RULES: readonly ArchRule[] = [
  { audit: AUDIT_ARCH_X86_64, syscalls: [248, 249, 250], denyAtOrAbove: X32_SYSCALL_BIT },
  { audit: AUDIT_ARCH_I386, syscalls: [286, 287, 288] },
]
const ARM_RULES: readonly ArchRule[] = [
  { audit: AUDIT_ARCH_AARCH64, syscalls: [217, 218, 219] },
  { audit: AUDIT_ARCH_ARM, syscalls: [309, 310, 311] },
]
// A 32-bit node often runs on a 64-bit kernel (32-bit Raspberry Pi OS), where the sandbox can
// exec 64-bit binaries: it needs both sections too. The arch check makes the extra one harmless.
const RULES: Partial<Record<NodeJS.Architecture, readonly ArchRule[]>> = { x64: X86_RULES, ia32: X86_RULES, arm64: ARM_RULES, arm: ARM_RULES }

type Insn = [code: number, jt: number, jf: number, k: number]

function archSection(rule: ArchRule): Insn[] {
  const checks: Array<[code: number, k: number]> = []
  if (rule.denyAtOrAbove !== undefined) checks.push([BPF_JMP_JGE_K, rule.denyAtOrAbove])
  for (const nr of rule.syscalls) checks.push([BPF_JMP_JEQ_K, nr])
  // Layout: load nr, the checks (jump to deny on match), allow, deny.
  const denyIndex = 1 + checks.length + 1
  const insns: Insn[] = [[BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR_OFFSET]]
  checks.forEach(([code, k], i) => insns.push([code, denyIndex - (1 + i) - 1, 0, k]))
  insns.push([BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW])
  insns.push([BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM])
  return insns
}

/** The compiled filter for bwrap `--seccomp FD`, or null on an architecture we have no syscall table for. */
export function buildKeyringSeccompFilter(arch: NodeJS.Architecture = process.arch): Buffer | null {
  const rules = RULES[arch]
  if (rules === undefined) return null
  const insns: Insn[] = [[BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH_OFFSET]]
  for (const rule of rules) {
    const section = archSection(rule)
    insns.push([BPF_JMP_JEQ_K, 0, section.length, rule.audit])
    insns.push(...section)
  }
  // Any other ABI: allow (only the ones listed can reach the keyring syscalls by these numbers).
  insns.push([BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW])
  const out = Buffer.alloc(insns.length * SOCK_FILTER_BYTES)
  insns.forEach(([code, jt, jf, k], i) => {
    const at = i * SOCK_FILTER_BYTES
    out.writeUInt16LE(code, at)
    out.writeUInt8(jt, at + 2)
    out.writeUInt8(jf, at + 3)
    out.writeUInt32LE(k >>> 0, at + 4)
  })
  return out
}
