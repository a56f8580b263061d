// Package redact hides secret-looking values in process command lines before
// closewait shows them anywhere (text, JSON, the agent's API, dashboard and
// metrics).
//
// Command lines often carry secrets: `--password=…`, `mysql -p…`,
// `postgres://user:pass@host`, API tokens, `X_TOKEN=…` assignments. Args
// replaces the value of each such argument with Mask and keeps the rest, so
// the command stays recognisable. It errs on the side of hiding: a flag named
// like a secret loses its value even when it was not one.
package redact

import (
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
)

// Mask replaces a hidden value.
const Mask = "***"

// secretWords are the name parts that mark a value as secret: a name is split
// into words at '-', '_', '.', other punctuation and camelCase boundaries,
// and any word listed here hides the value.
var secretWords = map[string]bool{
	"password": true, "passwd": true, "pwd": true, "pass": true, "passphrase": true,
	"secret": true, "secrets": true, "token": true, "tokens": true,
	"key": true, "apikey": true, "accesskey": true, "secretkey": true, "privatekey": true,
	"credential": true, "credentials": true, "auth": true, "authorization": true,
	"cookie": true, "session": true, "sig": true, "signature": true,
}

// pathWords name a value that says where a secret is, not the secret:
// `--password-file=/run/secrets/db` stays as it is.
var pathWords = map[string]bool{"file": true, "path": true, "dir": true}

var (
	// urlUserinfo finds the password of scheme://user:password@ in an argument.
	urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^/?#@\s:]*):([^/?#@\s]*)@`)
	// urlQuery finds name=value pairs of a URL query (?a=1&token=x).
	urlQuery = regexp.MustCompile(`([?&;])([^=&;#\s]+)=([^&;#\s]*)`)
	// assignment finds NAME=VALUE in an argument (--password=x, X_TOKEN=x,
	// -Dpassword=x), also several in one (a DSN "host=h password=x", "a=1,token=x").
	assignment = regexp.MustCompile(`(^|[\s,])(-{0,2}[A-Za-z_][A-Za-z0-9_.-]*)=([^\s,]*)`)
	// headerLine is an HTTP header given as an argument (curl -H 'Authorization: Bearer …').
	headerLine = regexp.MustCompile(`(?i)^\s*(authorization|proxy-authorization|cookie|x-api-key|x-auth-token)\s*:`)
)

// Args returns args with secret-looking values replaced by Mask. args[0] is
// the program: it is kept, and decides program-specific rules (mysql's
// -pPASSWORD). args itself is not modified.
func Args(args []string) []string {
	out := make([]string, len(args))
	mysql := len(args) > 0 && isMySQLClient(args[0])
	hideNext := false
	for i, a := range args {
		if i == 0 {
			out[i] = a
			continue
		}
		if hideNext && a != "" && !strings.HasPrefix(a, "-") {
			out[i] = Mask
			hideNext = false
			continue
		}
		hideNext = false
		out[i] = arg(a, mysql)
		if !strings.Contains(a, "=") && strings.HasPrefix(a, "-") && IsSecretName(a) {
			hideNext = true // --password VALUE
		}
	}
	return out
}

// arg redacts one argument.
func arg(a string, mysql bool) string {
	if mysql && len(a) > 2 && strings.HasPrefix(a, "-p") {
		return "-p" + Mask
	}
	if m := headerLine.FindString(a); m != "" {
		return m + " " + Mask
	}
	a = urlUserinfo.ReplaceAllString(a, "${1}:"+Mask+"@")
	a = urlQuery.ReplaceAllStringFunc(a, func(kv string) string {
		m := urlQuery.FindStringSubmatch(kv)
		if m[3] != "" && m[3] != Mask && IsSecretName(m[2]) {
			return m[1] + m[2] + "=" + Mask
		}
		return kv
	})
	return assignment.ReplaceAllStringFunc(a, func(kv string) string {
		m := assignment.FindStringSubmatch(kv)
		if m[3] != "" && m[3] != Mask && IsSecretName(m[2]) {
			return m[1] + m[2] + "=" + Mask
		}
		return kv
	})
}

// Cmdline is Args joined by spaces, as closewait shows command lines.
func Cmdline(args []string) string { return strings.Join(Args(args), " ") }

// IsSecretName reports whether a flag, variable or parameter name looks like
// it holds a secret: one of its words is a secret word (password, token,
// secret, key, …) and none says the value is a path to one (file, path, dir).
func IsSecretName(name string) bool {
	secret := false
	for _, w := range words(name) {
		if pathWords[w] {
			return false
		}
		secret = secret || secretWords[w]
	}
	return secret
}

// words splits a name into lower-case words at punctuation and camelCase
// boundaries: "keyStorePassword" → key store password, "X_API_TOKEN" → x api token.
func words(name string) []string {
	var out []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			out = append(out, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	rs := []rune(name)
	for i, r := range rs {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			flush()
			continue
		case unicode.IsUpper(r) && i > 0 && unicode.IsLower(rs[i-1]):
			flush() // fooBar
		case unicode.IsUpper(r) && i > 0 && unicode.IsUpper(rs[i-1]) && i+1 < len(rs) && unicode.IsLower(rs[i+1]):
			flush() // HTTPServer → HTTP Server
		}
		cur = append(cur, r)
	}
	flush()
	return out
}

// isMySQLClient reports whether program is one of the MySQL/MariaDB clients,
// whose -pPASSWORD takes the password glued to the flag.
func isMySQLClient(program string) bool {
	base := filepath.Base(program)
	return strings.HasPrefix(base, "mysql") || strings.HasPrefix(base, "mariadb")
}
