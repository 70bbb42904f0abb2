// Command backend is the end-to-end tests' stand-in for an application: an HTTP server that
// answers every request with who served it, so a test can tell which app (and which pod)
// a request reached through Services, Ingresses and load balancers.
//
// Every request except /healthz gets two lines:
//
//	<pod name>
//	<Host header> <URL path>
//
// The pod name is $POD_NAME (set from the downward API), else the hostname. /healthz
// answers 200 "ok" for probes. The server listens on every TCP port in $PORTS (comma
// separated, default 8080), so one image serves apps with different target ports. Ports
// below 1024 as the image's non-root user need the pod-level safe sysctl
// net.ipv4.ip_unprivileged_port_start=0 (or NET_BIND_SERVICE). SIGTERM and SIGINT stop it
// at once (it is PID 1 in its container and must not wait for the grace period).
//
// Only the standard library: built with CGO_ENABLED=0 into a static binary for a scratch
// image (hack/images.sh backend).
package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		fmt.Println("gatehouse-backend 1")
		return
	}
	name := os.Getenv("POD_NAME")
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			fmt.Fprintf(os.Stderr, "backend: no POD_NAME and no hostname: %v\n", err)
			os.Exit(1)
		}
		name = h
	}
	ports, err := parsePorts(os.Getenv("PORTS"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "backend: PORTS: %v\n", err)
		os.Exit(1)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Backend", name)
		fmt.Fprintf(w, "%s\n%s %s\n", name, r.Host, r.URL.Path)
	})

	// Bind every port first, so a bad port fails the start instead of half-serving.
	listeners := make([]net.Listener, 0, len(ports))
	for _, p := range ports {
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			fmt.Fprintf(os.Stderr, "backend: listen on port %d: %v\n", p, err)
			os.Exit(1)
		}
		listeners = append(listeners, l)
	}
	errs := make(chan error, len(listeners))
	for _, l := range listeners {
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func(l net.Listener) { errs <- srv.Serve(l) }(l)
	}
	fmt.Fprintf(os.Stderr, "backend %s: listening on ports %v\n", name, ports)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		fmt.Fprintf(os.Stderr, "backend %s: %v, exiting\n", name, s)
	case err := <-errs:
		if !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "backend %s: %v\n", name, err)
			os.Exit(1)
		}
	}
}

// parsePorts reads a comma-separated list of TCP ports; empty means 8080. Duplicates are
// dropped, blanks around entries ignored.
func parsePorts(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return []int{8080}, nil
	}
	var ports []int
	seen := map[int]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("%q is not a TCP port (1-65535)", f)
		}
		if !seen[p] {
			seen[p] = true
			ports = append(ports, p)
		}
	}
	if len(ports) == 0 {
		return nil, fmt.Errorf("%q names no port", s)
	}
	return ports, nil
}
