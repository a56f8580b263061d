//go:build !linux

package snapshot

func adviseHugePages([]Socket) {}
