// Package history keeps successive closewait snapshots in an embedded,
// bounded, crash-safe store: one file, no server.
//
// Each [Store.Record] writes, in one transaction, the host totals (sockets
// per state, CLOSE_WAIT, how many CLOSE_WAIT sockets appeared and went away
// since the previous record), one point per process holding CLOSE_WAIT
// sockets (pid, comm, start time to tell a reused pid apart, CLOSE_WAIT
// count, open fds, fd limit, oldest age, status), and the first time each
// CLOSE_WAIT socket was seen, by inode. From these come per-process series
// ([Store.Series]), host totals over time ([Store.Totals]), socket ages that
// do not depend on tcp_info ([Store.FirstSeen]) and growth since the last
// run ([Store.LastRecord], [Store.Last]).
//
// # Bounds
//
// Records older than [Options.MaxAge] (default 7 days) are pruned on Record.
// When the live data passes 3/4 of [Options.MaxBytes] (default 64 MiB) the
// oldest quarter of the records is dropped, and a file that has grown past
// MaxBytes anyway (free-page fragmentation) is compacted into a new file
// that replaces it atomically. First-seen entries are kept for live
// CLOSE_WAIT sockets only: an inode that left CLOSE_WAIT is forgotten at the
// next Record.
//
// # Crash safety
//
// The store is a bbolt (go.etcd.io/bbolt) B+tree file: every Record is one
// ACID transaction committed with fsync, so a process killed at any moment
// (kill -9, power loss) leaves the last committed record readable and the
// file consistent. [Store.Check] runs bbolt's consistency check.
//
// # Concurrency
//
// One process at a time holds the file open for writing (an exclusive flock);
// a second Open waits up to [Options.Timeout] (default 3 s) and then fails
// with [ErrLocked]. A Store is safe for concurrent use by goroutines.
package history
