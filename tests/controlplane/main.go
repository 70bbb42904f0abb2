// Command gatehouse-controlplane is etcd, kube-apiserver, kube-controller-manager and,
// for the opt-in real node (CLUSTER_NODE=1), kubelet, kube-scheduler and kube-proxy in one
// binary, built from Go modules (the machines have no Docker and cannot download release
// binaries). It exists only for Gatehouse's integration tests and demo; see
// hack/cluster-up.sh for how it is run and docs in shared/design/testing.md.
//
// Usage: gatehouse-controlplane etcd|kube-apiserver|kube-controller-manager|kubelet|
// kube-scheduler|kube-proxy [flags...], free-ports [N], version
package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	_ "time/tzdata" // as upstream's mains: CronJob time zones

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // as upstream: JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // as upstream: client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // as upstream: version metric
	"k8s.io/component-base/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcm "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func usage() {
	fmt.Fprintf(os.Stderr, "usage: %s etcd|kube-apiserver|kube-controller-manager|kubelet|kube-scheduler|kube-proxy [flags...]\n"+
		"       %s free-ports [N]\n       %s version\n", os.Args[0], os.Args[0], os.Args[0])
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	sub, rest := os.Args[1], os.Args[2:]
	switch sub {
	case "etcd":
		// etcdmain.Main looks at args[1] for its own sub-commands (gateway, grpc-proxy)
		// and parses flags from args[1:], so hand it argv with "etcd" as argv[0].
		etcdmain.Main(os.Args[1:])
	case "kube-apiserver":
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(rest)
		os.Exit(cli.Run(cmd))
	case "kube-controller-manager":
		cmd := kcm.NewControllerManagerCommand()
		cmd.SetArgs(rest)
		os.Exit(cli.Run(cmd))
	// The node's components (hack/cluster-up.sh with CLUSTER_NODE=1), as upstream's mains.
	case "kubelet":
		cmd := kubelet.NewKubeletCommand(context.Background())
		cmd.SetArgs(rest)
		os.Exit(cli.Run(cmd))
	case "kube-scheduler":
		cmd := scheduler.NewSchedulerCommand()
		cmd.SetArgs(rest)
		os.Exit(cli.Run(cmd))
	case "kube-proxy":
		cmd := proxy.NewProxyCommand()
		cmd.SetArgs(rest)
		os.Exit(cli.Run(cmd))
	case "free-ports":
		// Used by hack/cluster-up.sh: pick N free loopback ports without needing python.
		n := 1
		if len(rest) > 0 {
			var err error
			if n, err = strconv.Atoi(rest[0]); err != nil || n < 1 {
				usage()
			}
		}
		ports, err := freePorts(n)
		if err != nil {
			fmt.Fprintln(os.Stderr, "free-ports:", err)
			os.Exit(1)
		}
		fmt.Println(strings.Trim(fmt.Sprint(ports), "[]"))
	case "version", "--version":
		// Prints the Kubernetes version baked in with -ldflags -X (see hack/controlplane.mk).
		fmt.Println(version.Get().GitVersion)
	default:
		usage()
	}
}

// freePorts returns n distinct TCP ports that are free on 127.0.0.1 right now. They are
// drawn below the kernel's ephemeral range (ip_local_port_range), so the outgoing
// connections the components make while starting up cannot take a port that a later
// component is about to listen on. All n listeners are held open until every port is
// chosen, so the ports are distinct. If no such range exists, the kernel picks (port 0).
func freePorts(n int) ([]int, error) {
	lo, hi := 20000, 32767
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if start, err := strconv.Atoi(f[0]); err == nil && start-1 < hi {
				hi = start - 1
			}
		}
	}
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for tries := 0; len(ports) < n && tries < 1000; tries++ {
		port := 0
		if hi > lo {
			port = lo + rand.IntN(hi-lo+1)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("found only %d of %d free ports", len(ports), n)
	}
	return ports, nil
}
