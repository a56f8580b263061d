package ebpfowners

import "github.com/closewait/closewait/internal/procscan"

// The Iterator is what procscan.ScanOptions.Source takes.
var _ procscan.SocketFDSource = (*Iterator)(nil)
