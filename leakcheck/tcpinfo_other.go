//go:build !linux

package leakcheck

import (
	"net"
	"time"
)

func tcpState(net.Conn) (uint8, time.Duration, error) { return 0, 0, ErrNotSupported }
