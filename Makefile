# closewait: build, docs and packages. `make help` lists the targets.
# Needs Go (see go.mod); `make deb` also needs git (for the version) and
# downloads nfpm through the Go module proxy the first time.

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
MODULE  := github.com/closewait/closewait
LDFLAGS := -s -w -X $(MODULE)/internal/cli.Version=$(VERSION)
GOBUILD := CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)"
PREFIX  ?= /usr/local
DESTDIR ?=

.PHONY: all build man completions deb install uninstall test vet docs-update docker clean help

all: build man completions ## the binary, its man page and completions

build: ## bin/closewait: static (CGO_ENABLED=0), -trimpath, version stamped
	$(GOBUILD) -o bin/closewait ./cmd/closewait
	@bin/closewait --version

man: build ## bin/closewait.1 generated from the command line's definition
	bin/closewait man > bin/closewait.1

completions: build ## bin/completions/: bash, zsh and fish
	mkdir -p bin/completions
	bin/closewait completion bash > bin/completions/closewait.bash
	bin/closewait completion zsh > bin/completions/_closewait
	bin/closewait completion fish > bin/completions/closewait.fish

deb: ## dist/closewait_VERSION_ARCH.deb (nfpm; see packaging/)
	cd packaging && go run . -version "$(VERSION)" -out ../dist

install: all ## into $(DESTDIR)$(PREFIX) (default /usr/local)
	install -D -m 0755 bin/closewait $(DESTDIR)$(PREFIX)/bin/closewait
	install -D -m 0644 bin/closewait.1 $(DESTDIR)$(PREFIX)/share/man/man1/closewait.1
	install -D -m 0644 bin/completions/closewait.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/closewait
	install -D -m 0644 bin/completions/_closewait $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_closewait
	install -D -m 0644 bin/completions/closewait.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/closewait.fish

uninstall: ## what install installed
	rm -f $(DESTDIR)$(PREFIX)/bin/closewait $(DESTDIR)$(PREFIX)/share/man/man1/closewait.1 \
	  $(DESTDIR)$(PREFIX)/share/bash-completion/completions/closewait \
	  $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_closewait \
	  $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/closewait.fish

test: ## the test suite (run as root for all of it)
	go test ./...

vet: ## gofmt and go vet
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"
	go vet ./...

docs-update: ## recapture the field guide's examples and help topics from live fixtures
	go test ./cmd/closewait -run TestFieldGuide -update

docker: ## the agent image (needs a Docker engine)
	docker build --build-arg VERSION=$(VERSION) -t closewait:$(VERSION) .

clean:
	rm -rf bin dist

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14
