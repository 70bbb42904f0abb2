// Command gatehouse-mockoidc is a mock OpenID Connect issuer on loopback (or the test
// node's pod bridge) for Gatehouse's
// sign-in tests: github.com/oauth2-proxy/mockoidc (a real OIDC server as a Go library:
// discovery, authorize, token, userinfo, JWKS; RS256 ID tokens) behind a few flags, so
// that oauth2-proxy can be pointed at a real issuer without any outside identity provider.
//
// Its authorize endpoint approves every request at once (no login page, no browser) as
// one user: mockoidc's default user (jane.doe@example.com, groups engineering and design)
// unless --email / --groups say otherwise.
//
// Once it listens it prints one JSON line to stdout, then serves until SIGTERM or SIGINT:
//
//	{"issuer":"http://127.0.0.1:PORT/oidc","clientId":"...","clientSecret":"...","addr":"127.0.0.1:PORT","discovery":"..."}
//
// Exit status 0 after a signal, 1 when it cannot listen, 2 for usage errors.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/oauth2-proxy/mockoidc"
)

type ready struct {
	Issuer       string `json:"issuer"`
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret"`
	Addr         string `json:"addr"`
	Discovery    string `json:"discovery"`
}

func main() {
	fs := flag.NewFlagSet("gatehouse-mockoidc", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address (loopback, or a private address of this machine such as the test node's pod bridge; port 0 picks a free port, printed in the ready line)")
	clientID := fs.String("client-id", "", "the OAuth2 client id the issuer accepts (default: random)")
	clientSecret := fs.String("client-secret", "", "the OAuth2 client secret the issuer accepts (default: random)")
	email := fs.String("email", "", "the signed-in user's email (default: mockoidc's default user, jane.doe@example.com)")
	groups := fs.String("groups", "", "comma-separated groups of the signed-in user (with --email; default none)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			return
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "gatehouse-mockoidc: unexpected arguments %q\n", fs.Args())
		os.Exit(2)
	}
	if *groups != "" && *email == "" {
		fmt.Fprintln(os.Stderr, "gatehouse-mockoidc: --groups needs --email")
		os.Exit(2)
	}
	if err := checkLoopback(*addr); err != nil {
		fmt.Fprintf(os.Stderr, "gatehouse-mockoidc: --addr: %v\n", err)
		os.Exit(2)
	}

	// The default key pair is mockoidc's fixed test key: fine for a test issuer, and no
	// RSA key generation at start.
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		fatal(err)
	}
	if *clientID != "" {
		m.ClientID = *clientID
	}
	if *clientSecret != "" {
		m.ClientSecret = *clientSecret
	}
	if *email != "" {
		user := userFor(*email, *groups)
		// Each authorize request pops a user from the queue (the default user when it is
		// empty): keep the configured one there.
		if err := m.AddMiddleware(func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == mockoidc.AuthorizationEndpoint {
					q := m.UserQueue
					q.Lock()
					if len(q.Queue) == 0 {
						q.Queue = append(q.Queue, user)
					}
					q.Unlock()
				}
				next.ServeHTTP(w, r)
			})
		}); err != nil {
			fatal(err)
		}
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := m.Start(ln, nil); err != nil {
		fatal(err)
	}
	line, err := json.Marshal(ready{
		Issuer:       m.Issuer(),
		ClientID:     m.ClientID,
		ClientSecret: m.ClientSecret,
		Addr:         ln.Addr().String(),
		Discovery:    m.DiscoveryEndpoint(),
	})
	if err != nil {
		fatal(err)
	}
	fmt.Fprintf(os.Stdout, "%s\n", line)

	<-ctx.Done()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = m.Server.Shutdown(shutdownCtx)
}

// checkLoopback accepts host:port where host is a loopback IP address (or "localhost"), or
// a private address of this machine's own interfaces (the test node's pod bridge, which
// pods and local clients both reach): tests never serve on other networks.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip != nil && ip.IsLoopback() {
		return nil
	}
	if ip != nil && ip.IsPrivate() && isLocal(ip) {
		return nil
	}
	return fmt.Errorf("%q is neither a loopback address nor a private address of this machine (tests serve on loopback and the node's pod bridge only)", host)
}

func isLocal(ip net.IP) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

func userFor(email, groups string) *mockoidc.MockUser {
	u := &mockoidc.MockUser{
		Subject:           email,
		Email:             email,
		EmailVerified:     true,
		PreferredUsername: strings.SplitN(email, "@", 2)[0],
	}
	for _, g := range strings.Split(groups, ",") {
		if g = strings.TrimSpace(g); g != "" {
			u.Groups = append(u.Groups, g)
		}
	}
	return u
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "gatehouse-mockoidc: %v\n", err)
	os.Exit(1)
}
