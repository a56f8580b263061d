package history

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// pseudoFS names the kernel's virtual file systems: their "regular" files
// are interfaces to the kernel, never a place for data.
var pseudoFS = map[int64]string{
	unix.PROC_SUPER_MAGIC:    "procfs",
	unix.SYSFS_MAGIC:         "sysfs",
	unix.DEBUGFS_MAGIC:       "debugfs",
	unix.TRACEFS_MAGIC:       "tracefs",
	unix.SECURITYFS_MAGIC:    "securityfs",
	unix.CGROUP_SUPER_MAGIC:  "cgroupfs",
	unix.CGROUP2_SUPER_MAGIC: "cgroup2fs",
	unix.BPF_FS_MAGIC:        "bpffs",
	0x62656570:               "configfs", // CONFIGFS_MAGIC
	unix.PSTOREFS_MAGIC:      "pstore",
	unix.EFIVARFS_MAGIC:      "efivarfs",
	unix.DEVPTS_SUPER_MAGIC:  "devpts",
	unix.SELINUX_MAGIC:       "selinuxfs",
	0x65735543:               "fusectl", // FUSE_CTL_SUPER_MAGIC
}

// checkPath refuses a store path that is not a regular file or a new file
// in an existing directory, and reports whether the file exists. With
// createDir, a missing directory is created (the default path's).
func checkPath(path string, createDir bool) (exists bool, err error) {
	fi, err := os.Stat(path)
	switch {
	case err == nil:
		if !fi.Mode().IsRegular() {
			return false, fmt.Errorf("not a regular file (%s)", fileKind(fi.Mode()))
		}
		return true, onDataFS(path)
	case !errors.Is(err, fs.ErrNotExist):
		return false, err
	}
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist) && createDir:
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return false, err
		}
		return false, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("directory %s does not exist (create it first)", dir)
	case err != nil:
		return false, err
	case !di.IsDir():
		return false, fmt.Errorf("%s is not a directory", dir)
	}
	return false, onDataFS(dir)
}

// onDataFS refuses a path on one of the kernel's virtual file systems.
func onDataFS(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return nil // let the open say what is wrong
	}
	if name, ok := pseudoFS[int64(st.Type)]; ok {
		return fmt.Errorf("on %s, a kernel interface, not a file for data", name)
	}
	return nil
}

// fileKind names a file type for an error message.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "not a regular file"
}
