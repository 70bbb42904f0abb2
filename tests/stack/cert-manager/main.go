// Command gatehouse-cert-manager is a small cert-manager controller for Gatehouse's
// integration tests: the real cert-manager v1.20 controllers for Certificates,
// CertificateRequests and CA Issuers/ClusterIssuers, run out of cluster against the local
// control plane.
//
// Why our own main: upstream's cmd/controller is a separate Go module
// (github.com/cert-manager/cert-manager/controller-binary) that the module proxy does not
// serve. The controllers themselves live in the served github.com/cert-manager/cert-manager
// module and register themselves with controller.Register when imported, so a main only
// has to import the ones it wants, build a ContextFactory and run them (the same steps as
// upstream's cmd/controller/app.Run, without leader election, the metrics server, ACME and
// the ingress/gateway shims). See shared/design/real-stack.md.
//
// Usage:
//
//	gatehouse-cert-manager --kubeconfig F [--cluster-resource-namespace NS]
//	    [--healthz-addr 127.0.0.1:PORT] [--certificate-request-minimum-backoff D] [--v N]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"

	// Each of these packages registers its controller(s) in controller.Known() from an
	// init function. Only the ones a CA issuer needs are linked in:
	//   issuers, clusterissuers: set the Ready condition of (Cluster)Issuers;
	//   certificaterequests/approver: approves CertificateRequests (without it no
	//     request is ever signed);
	//   certificaterequests/ca: signs approved requests that reference a CA issuer;
	//   certificates/*: the Certificate -> private key -> CertificateRequest -> Secret
	//     pipeline, and the Certificate's Ready condition.
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	// The CA issuer implementation that the (cluster)issuers controllers call to check
	// an issuer's CA Secret (registers itself with pkg/issuer).
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
)

// Workers per controller: upstream's default (numberOfConcurrentWorkers).
const workers = 5

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "gatehouse-cert-manager: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	kubeconfig := flag.String("kubeconfig", "",
		"path to the kubeconfig of the cluster to manage (default: $KUBECONFIG); there is no in-cluster mode worth having here")
	clusterResourceNamespace := flag.String("cluster-resource-namespace", "cert-manager",
		"namespace holding the CA Secrets that ClusterIssuers reference")
	healthzAddr := flag.String("healthz-addr", "",
		"if set, serve /healthz and /livez on this loopback address (127.0.0.1:PORT, port 0 picks one); off by default")
	minBackoff := flag.Duration("certificate-request-minimum-backoff", 5*time.Second,
		"initial back-off before re-issuing after a failed CertificateRequest (upstream's default is 1h; short here so tests see retries)")
	verbosity := flag.Int("v", 0, "klog verbosity (cert-manager logs controller activity at 2, debug at 4)")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", flag.Args())
	}

	// klog writes to stderr by default; its own flag set stays private so that this
	// command has exactly the flags above.
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	if err := klogFlags.Set("v", strconv.Itoa(*verbosity)); err != nil {
		return err
	}
	klog.EnableContextualLogging(true)
	defer klog.Flush()

	if *kubeconfig == "" {
		*kubeconfig = os.Getenv("KUBECONFIG")
	}
	if *kubeconfig == "" {
		// An empty path makes cert-manager fall back to in-cluster config, which
		// fails confusingly outside a pod.
		return errors.New("--kubeconfig (or $KUBECONFIG) is required")
	}

	// Refuse a healthz address that is not loopback before connecting anywhere: nothing
	// this process opens may be reachable from outside the machine.
	var healthzLn net.Listener
	if *healthzAddr != "" {
		host, _, err := net.SplitHostPort(*healthzAddr)
		if err != nil {
			return fmt.Errorf("--healthz-addr: %w", err)
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("--healthz-addr must be a loopback IP address, got %q", host)
		}
		healthzLn, err = net.Listen("tcp", *healthzAddr)
		if err != nil {
			return fmt.Errorf("--healthz-addr: %w", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := logf.FromContext(ctx, "gatehouse-cert-manager")
	ctx = logf.NewContext(ctx, log)

	// The options upstream's main derives from its configuration. QPS/burst are
	// upstream's defaults. No metrics server is started: the context creates its Metrics
	// registry, but only cmd/controller serves it (on 0.0.0.0 by default).
	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig:         *kubeconfig,
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace: *clusterResourceNamespace,
		},
		CertificateOptions: controller.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: *minBackoff,
		},
	})
	if err != nil {
		return fmt.Errorf("building controller context: %w", err)
	}
	// The base context owns the shared informer factories every controller registers
	// its informers with; they must be started after all controllers are constructed.
	base, err := factory.Build()
	if err != nil {
		return fmt.Errorf("building controller context: %w", err)
	}

	g, gctx := errgroup.WithContext(ctx)

	if healthzLn != nil {
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/healthz", "/livez", "/readyz":
					_, _ = w.Write([]byte("ok"))
				default:
					http.NotFound(w, r)
				}
			}),
			ReadHeaderTimeout: 10 * time.Second,
		}
		log.Info("serving healthz", "address", healthzLn.Addr().String())
		g.Go(func() error {
			if err := srv.Serve(healthzLn); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		})
	}

	// Every registered controller is one this binary chose to import, so all run.
	// Sorted for a stable log.
	names := make([]string, 0, len(controller.Known()))
	for name := range controller.Known() {
		names = append(names, name)
	}
	sort.Strings(names)
	log.Info("starting controllers", "controllers", names, "clusterResourceNamespace", *clusterResourceNamespace)
	for _, name := range names {
		ctrl, err := controller.Known()[name](factory)
		if err != nil {
			stop()
			_ = g.Wait()
			return fmt.Errorf("constructing controller %s: %w", name, err)
		}
		g.Go(func() error {
			if err := ctrl.Run(workers, gctx); err != nil {
				return fmt.Errorf("controller %s: %w", name, err)
			}
			return nil
		})
	}

	base.SharedInformerFactory.Start(gctx.Done())
	base.KubeSharedInformerFactory.Start(gctx.Done())
	base.HTTP01ResourceMetadataInformersFactory.Start(gctx.Done())

	err = g.Wait()
	base.HTTP01ResourceMetadataInformersFactory.Shutdown()
	base.KubeSharedInformerFactory.Shutdown()
	base.SharedInformerFactory.Shutdown()
	if err != nil {
		return err
	}
	log.Info("control loops exited")
	return nil
}
