//go:build !linux

package snapshot

func adviseHugePages([]Socket) bool { return false }

func unadviseHugePages([]Socket) {}
