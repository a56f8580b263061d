// Package procscan maps socket inodes to the processes that hold them and
// reads the facts about those processes that closewait reports.
//
// No kernel socket structure names its process: the owner is found by reading
// the links /proc/PID/fd/N -> "socket:[INODE]". That walk is the expensive
// part of every tool that shows owners (ss -p, lsof, netstat -p), at about
// 5 µs of kernel time per fd. [FS.FindOwners] keeps it cheap:
//
//   - it visits processes most likely to matter first (the socket's uid, then
//     the most open fds, read from stat(/proc/PID/fd).st_size on Linux ≥ 6.2);
//   - it reads each fd table with one open, getdents and readlinkat into a
//     reused buffer, without allocating per fd, on several workers;
//   - it stops once every wanted inode has an owner, then visits only the
//     parents and children of the owners it found, because fork shares
//     sockets between them. A socket passed to an unrelated process
//     over a unix socket is found only by a complete scan ([ScanOptions.Complete]).
//
// Processes and fds vanish mid-scan all the time: those are skipped and
// counted, never errors. Without privilege, other users' fd tables cannot be
// read (they need CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, or root): those are
// counted as denied.
//
// All access goes through an [FS] rooted at a procfs mount point, so tests can
// use a fixture tree under testdata/.
package procscan
