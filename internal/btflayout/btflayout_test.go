package btflayout

import (
	"errors"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

func TestMember(t *testing.T) {
	u32 := &btf.Int{Name: "unsigned int", Size: 4}
	u16 := &btf.Int{Name: "unsigned short", Size: 2}
	addr := &btf.Struct{Name: "in6_addr", Size: 16, Members: []btf.Member{
		{Name: "in6_u", Type: &btf.Union{Size: 16, Members: []btf.Member{
			{Name: "u6_addr32", Type: &btf.Array{Type: u32, Nelems: 4}},
		}}},
	}}
	nsCommon := &btf.Struct{Name: "ns_common", Size: 16, Members: []btf.Member{
		{Name: "ops", Offset: 0, Type: &btf.Pointer{Target: &btf.Void{}}},
		{Name: "inum", Offset: 64, Type: u32},
	}}
	common := &btf.Struct{Name: "sock_common", Size: 64, Members: []btf.Member{
		{Name: "", Offset: 0, Type: &btf.Union{Size: 8, Members: []btf.Member{
			{Name: "", Type: &btf.Struct{Size: 8, Members: []btf.Member{
				{Name: "skc_daddr", Offset: 0, Type: u32},
				{Name: "skc_rcv_saddr", Offset: 32, Type: u32},
			}}},
		}}},
		{Name: "skc_family", Offset: 128, Type: u16},
		{Name: "skc_v6_daddr", Offset: 256, Type: addr},
		{Name: "odd", Offset: 260, Type: u16},
		{Name: "flags", Offset: 272, Type: u16, BitfieldSize: 3},
	}}
	sock := &btf.Struct{Name: "sock", Size: 256, Members: []btf.Member{
		{Name: "__sk_common", Offset: 0, Type: common},
		{Name: "ns", Offset: 1024, Type: &btf.Typedef{Name: "ns_t", Type: nsCommon}},
	}}
	tests := []struct {
		path []string
		want Field
		err  string
	}{
		{path: []string{"__sk_common", "skc_rcv_saddr"}, want: Field{Off: 4, Size: 4}},
		{path: []string{"__sk_common", "skc_family"}, want: Field{Off: 16, Size: 2}},
		{path: []string{"__sk_common", "skc_v6_daddr"}, want: Field{Off: 32, Size: 16}},
		{path: []string{"ns", "inum"}, want: Field{Off: 136, Size: 4}},
		{path: []string{"skc_family"}, err: "no such member"},
		{path: []string{"__sk_common", "odd"}, err: "not byte aligned"},
		{path: []string{"__sk_common", "flags"}, err: "bitfield"},
		{path: []string{"__sk_common", "skc_family", "x"}, err: "not a struct or union"},
	}
	for _, tt := range tests {
		got, err := Member(sock, tt.path...)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%v: err = %v, want one containing %q", tt.path, err, tt.err)
			}
			if tt.err == "no such member" && !errors.Is(err, ErrNoMember) {
				t.Errorf("%v: err = %v, want ErrNoMember", tt.path, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%v: got %+v, %v; want %+v", tt.path, got, err, tt.want)
		}
		if got.End() != tt.want.Off+tt.want.Size {
			t.Errorf("%v: End() = %d", tt.path, got.End())
		}
	}
}
