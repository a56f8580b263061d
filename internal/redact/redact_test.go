package redact

import (
	"strings"
	"testing"
)

func TestArgs(t *testing.T) {
	tests := []struct {
		name string
		in   string // arguments separated by '|'
		want string
	}{
		{"password flag", "app|--password=hunter2|--port=80", "app|--password=***|--port=80"},
		{"password next arg", "app|--password|hunter2|serve", "app|--password|***|serve"},
		{"short flag next arg is a value only when not a flag", "app|--token|--verbose", "app|--token|--verbose"},
		{"mysql -p", "/usr/bin/mysql|-uroot|-phunter2|db", "/usr/bin/mysql|-uroot|-p***|db"},
		{"mysql -p alone prompts", "mysql|-p|db", "mysql|-p|db"},
		{"-p elsewhere is a port", "redis-server|-p6379", "redis-server|-p6379"},
		{"url userinfo", "psql|postgres://app:s3cr3t@db:5432/x", "psql|postgres://app:***@db:5432/x"},
		{"url userinfo inside a flag", "app|--db=mysql://u:p@h/x", "app|--db=mysql://u:***@h/x"},
		{"url user without password", "git|https://user@host/repo", "git|https://user@host/repo"},
		{"url query token", "curl|https://h/x?a=1&access_token=abc", "curl|https://h/x?a=1&access_token=***"},
		{"env style", "env|X_TOKEN=abc|PATH=/bin", "env|X_TOKEN=***|PATH=/bin"},
		{"java property", "java|-Djavax.net.ssl.keyStorePassword=changeit|-jar|a.jar", "java|-Djavax.net.ssl.keyStorePassword=***|-jar|a.jar"},
		{"api key", "app|--api-key=k|--apiKey=k2", "app|--api-key=***|--apiKey=***"},
		{"dsn in one arg", "app|host=h password=x user=u", "app|host=h password=*** user=u"},
		{"comma list", "app|--opts=a=1,secret=x", "app|--opts=a=1,secret=***"},
		{"password file is a path", "app|--password-file=/run/secrets/db", "app|--password-file=/run/secrets/db"},
		{"header", "curl|-H|Authorization: Bearer abc", "curl|-H|Authorization: ***"},
		{"bypass is not pass", "app|--bypass=1|--keep-alive=5|--monkey=3", "app|--bypass=1|--keep-alive=5|--monkey=3"},
		{"program kept", "--password=x", "--password=x"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in []string
			if tt.in != "" {
				in = strings.Split(tt.in, "|")
			}
			orig := strings.Join(in, "|")
			got := strings.Join(Args(in), "|")
			if got != tt.want {
				t.Errorf("Args(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if strings.Join(in, "|") != orig {
				t.Errorf("Args modified its input")
			}
		})
	}
}

func TestIsSecretName(t *testing.T) {
	for name, want := range map[string]bool{
		"password": true, "DB_PASSWORD": true, "keyStorePassword": true, "X-Auth-Token": true,
		"client_secret": true, "HTTPToken": true, "port": false, "keepalive": false, "passthrough": false,
		"secret_file": false, "tokenPath": false,
	} {
		if got := IsSecretName(name); got != want {
			t.Errorf("IsSecretName(%q) = %v, want %v", name, got, want)
		}
	}
}

func FuzzArgs(f *testing.F) {
	f.Add("app --password=x postgres://u:p@h/?token=t")
	f.Add("mysql -pabc")
	f.Fuzz(func(t *testing.T, s string) {
		in := strings.Fields(s)
		out := Args(in)
		if len(out) != len(in) {
			t.Fatalf("Args changed the number of arguments: %d -> %d", len(in), len(out))
		}
		for i, a := range in {
			if strings.HasPrefix(a, "--password=") && i > 0 && out[i] != "--password=***" && a != "--password=" {
				t.Fatalf("%q not redacted: %q", a, out[i])
			}
		}
	})
}
