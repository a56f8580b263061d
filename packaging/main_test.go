package main

import "testing"

func TestDebVersion(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"v1.2.3", "1.2.3"},
		{"v1.2.3-4-gabcdef0", "1.2.3+git4.abcdef0"},
		{"v1.2.3-4-gabcdef0-dirty", "1.2.3+git4.abcdef0~dirty"},
		{"v1.2.0-rc1", "1.2.0~rc1"},
		{"v1.2.0-rc1-3-g1234567", "1.2.0~rc1+git3.1234567"},
		{"a17d0c5", "0.0.0+gita17d0c5"},
		{"a17d0c5-dirty", "0.0.0+gita17d0c5~dirty"},
		{"dev", "0.0.0+dev"},
	} {
		if got := DebVersion(tt.in); got != tt.want {
			t.Errorf("DebVersion(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
