package ebpfowners

import "golang.org/x/sys/unix"

// procPIDInitIno is PROC_PID_INIT_INO, the fixed inode number of the initial
// pid namespace (include/linux/proc_ns.h, stable since Linux 3.8).
const procPIDInitIno = 0xEFFFFFFC

// InInitPIDNS reports whether this process runs in the initial pid
// namespace, where the pids [Iterator.Each] reports (task->tgid) are the
// pids this process sees in /proc, and where the kernel visits every task.
// Elsewhere use the /proc walk.
func InInitPIDNS() bool {
	var self unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &self); err != nil {
		return false
	}
	// Compare with pid 1's namespace when permitted (root); otherwise
	// rely on the fixed inode number of the initial namespace.
	var init unix.Stat_t
	if err := unix.Stat("/proc/1/ns/pid", &init); err == nil {
		return self.Dev == init.Dev && self.Ino == init.Ino && self.Ino == procPIDInitIno
	}
	return self.Ino == procPIDInitIno
}
