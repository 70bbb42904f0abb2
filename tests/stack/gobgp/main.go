// gatehouse-gobgp: a real BGP router for the tests (GoBGP v3 as a library), listening on
// one address and accepting sessions from any source (a dynamic-neighbor range), or only
// from the --neighbor addresses given (those may carry a TCP MD5 password). It prints one
// JSON line per event on stdout (peer state changes, best paths added or withdrawn) and,
// with --rib-file, rewrites that file atomically after every change with the current state:
//
//	{"peers":[{"address":"10.244.0.1","asn":64513,"state":"ESTABLISHED"}],
//	 "routes":[{"prefix":"192.0.2.10/32","nextHop":"10.244.0.1","peer":"10.244.0.1",
//	            "asPath":[64513],"communities":["64512:100"],"localPref":0}]}
//
// A test polls the file (or reads the lines) until a route appears or goes.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
)

type route struct {
	Prefix      string   `json:"prefix"`
	NextHop     string   `json:"nextHop"`
	Peer        string   `json:"peer"`
	ASPath      []uint32 `json:"asPath"`
	Communities []string `json:"communities"`
	LocalPref   uint32   `json:"localPref"`
}

type peer struct {
	Address string `json:"address"`
	ASN     uint32 `json:"asn"`
	State   string `json:"state"`
}

type state struct {
	mu     sync.Mutex
	file   string
	peers  map[string]peer
	routes map[string]route // key: prefix + " " + peer
}

func (s *state) write() {
	if s.file == "" {
		return
	}
	out := struct {
		Peers  []peer  `json:"peers"`
		Routes []route `json:"routes"`
	}{Peers: []peer{}, Routes: []route{}}
	for _, p := range s.peers {
		out.Peers = append(out.Peers, p)
	}
	for _, r := range s.routes {
		out.Routes = append(out.Routes, r)
	}
	sort.Slice(out.Peers, func(i, j int) bool { return out.Peers[i].Address < out.Peers[j].Address })
	sort.Slice(out.Routes, func(i, j int) bool {
		return out.Routes[i].Prefix+" "+out.Routes[i].Peer < out.Routes[j].Prefix+" "+out.Routes[j].Peer
	})
	b, _ := json.Marshal(out)
	tmp := s.file + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err == nil {
		_ = os.Rename(tmp, s.file)
	}
}

func emit(v map[string]any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func decodePath(p *api.Path) (route, bool) {
	var r route
	nlri, err := p.GetNlri().UnmarshalNew()
	if err != nil {
		return r, false
	}
	switch n := nlri.(type) {
	case *api.IPAddressPrefix:
		r.Prefix = fmt.Sprintf("%s/%d", n.Prefix, n.PrefixLen)
	default:
		return r, false
	}
	r.Peer = p.GetNeighborIp()
	r.ASPath = []uint32{}
	r.Communities = []string{}
	for _, a := range p.GetPattrs() {
		m, err := a.UnmarshalNew()
		if err != nil {
			continue
		}
		switch at := m.(type) {
		case *api.NextHopAttribute:
			r.NextHop = at.NextHop
		case *api.MpReachNLRIAttribute:
			if len(at.NextHops) > 0 {
				r.NextHop = at.NextHops[0]
			}
		case *api.AsPathAttribute:
			for _, seg := range at.Segments {
				r.ASPath = append(r.ASPath, seg.Numbers...)
			}
		case *api.CommunitiesAttribute:
			for _, c := range at.Communities {
				r.Communities = append(r.Communities, fmt.Sprintf("%d:%d", c>>16, c&0xffff))
			}
		case *api.LocalPrefAttribute:
			r.LocalPref = at.LocalPref
		}
	}
	return r, true
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var neighbors multi
	addr := flag.String("listen-address", "127.0.0.31", "address to listen on for BGP")
	port := flag.Int("listen-port", 179, "BGP port")
	asn := flag.Uint("asn", 64512, "this router's ASN")
	routerID := flag.String("router-id", "", "router ID (default: the listen address)")
	peerASN := flag.Uint("peer-asn", 64513, "the ASN expected from peers")
	accept := flag.String("accept", "0.0.0.0/0", "accept sessions from this range (dynamic neighbors); ignored with --neighbor")
	password := flag.String("password", "", "TCP MD5 password for the --neighbor sessions")
	ribFile := flag.String("rib-file", "", "rewrite this JSON file with peers and routes after every change")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error (GoBGP's own log, on stderr)")
	flag.Var(&neighbors, "neighbor", "a peer address (repeatable); default: any address in --accept")
	flag.Parse()
	if *routerID == "" {
		*routerID = *addr
	}

	lvl := slog.LevelInfo
	_ = lvl.UnmarshalText([]byte(*logLevel))
	s := server.NewBgpServer(server.LoggerOption(&logger{slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})), lvl <= slog.LevelDebug}))
	go s.Serve()

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "gatehouse-gobgp: %s: %v\n", what, err)
		os.Exit(1)
	}
	if err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: uint32(*asn), RouterId: *routerID, ListenPort: int32(*port), ListenAddresses: []string{*addr},
	}}); err != nil {
		fail("start", err)
	}

	st := &state{file: *ribFile, peers: map[string]peer{}, routes: map[string]route{}}
	if *ribFile != "" {
		if abs, err := filepath.Abs(*ribFile); err == nil {
			st.file = abs
		}
	}
	if err := s.WatchEvent(ctx, &api.WatchEventRequest{
		Peer: &api.WatchEventRequest_Peer{},
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_BEST, Init: true},
		}},
	}, func(r *api.WatchEventResponse) {
		st.mu.Lock()
		defer st.mu.Unlock()
		if p := r.GetPeer(); p != nil && p.Type == api.WatchEventResponse_PeerEvent_STATE && p.Peer != nil {
			a := p.Peer.GetState().GetNeighborAddress()
			if a == "" {
				a = p.Peer.GetConf().GetNeighborAddress()
			}
			stt := p.Peer.GetState().GetSessionState().String()
			st.peers[a] = peer{Address: a, ASN: p.Peer.GetState().GetPeerAsn(), State: stt}
			emit(map[string]any{"event": "peer", "address": a, "asn": p.Peer.GetState().GetPeerAsn(), "state": stt})
			st.write()
		}
		if t := r.GetTable(); t != nil {
			for _, p := range t.Paths {
				rt, ok := decodePath(p)
				if !ok {
					continue
				}
				key := rt.Prefix + " " + rt.Peer
				if p.IsWithdraw {
					delete(st.routes, key)
					emit(map[string]any{"event": "withdraw", "prefix": rt.Prefix, "peer": rt.Peer})
				} else {
					st.routes[key] = rt
					emit(map[string]any{"event": "route", "prefix": rt.Prefix, "nextHop": rt.NextHop, "peer": rt.Peer, "asPath": rt.ASPath, "communities": rt.Communities})
				}
			}
			st.write()
		}
	}); err != nil {
		fail("watch", err)
	}

	afiSafis := []*api.AfiSafi{
		{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Enabled: true}},
		{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}, Enabled: true}},
	}
	if len(neighbors) == 0 {
		if err := s.AddPeerGroup(ctx, &api.AddPeerGroupRequest{PeerGroup: &api.PeerGroup{
			Conf:     &api.PeerGroupConf{PeerGroupName: "speakers", PeerAsn: uint32(*peerASN)},
			AfiSafis: afiSafis,
		}}); err != nil {
			fail("peer group", err)
		}
		if err := s.AddDynamicNeighbor(ctx, &api.AddDynamicNeighborRequest{DynamicNeighbor: &api.DynamicNeighbor{
			Prefix: *accept, PeerGroup: "speakers",
		}}); err != nil {
			fail("dynamic neighbor", err)
		}
	}
	for _, n := range neighbors {
		if err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: n, PeerAsn: uint32(*peerASN), AuthPassword: *password},
			Transport: &api.Transport{PassiveMode: true},
			AfiSafis:  afiSafis,
		}}); err != nil {
			fail("peer "+n, err)
		}
	}
	st.mu.Lock()
	st.write()
	st.mu.Unlock()
	emit(map[string]any{"event": "listening", "address": *addr, "port": *port, "asn": *asn, "peerAsn": *peerASN})
	<-ctx.Done()
	_ = s.StopBgp(context.Background(), &api.StopBgpRequest{})
}

// logger adapts GoBGP's logger interface to slog.
type logger struct {
	l     *slog.Logger
	debug bool
}

func attrs(f log.Fields) []any {
	out := make([]any, 0, 2*len(f))
	for k, v := range f {
		out = append(out, k, v)
	}
	return out
}
func (g *logger) Panic(msg string, f log.Fields) { g.l.Error(msg, attrs(f)...); panic(msg) }
func (g *logger) Fatal(msg string, f log.Fields) { g.l.Error(msg, attrs(f)...); os.Exit(1) }
func (g *logger) Error(msg string, f log.Fields) { g.l.Error(msg, attrs(f)...) }
func (g *logger) Warn(msg string, f log.Fields)  { g.l.Warn(msg, attrs(f)...) }
func (g *logger) Info(msg string, f log.Fields)  { g.l.Info(msg, attrs(f)...) }
func (g *logger) Debug(msg string, f log.Fields) { g.l.Debug(msg, attrs(f)...) }
func (g *logger) SetLevel(log.LogLevel)          {}
func (g *logger) GetLevel() log.LogLevel {
	if g.debug {
		return log.DebugLevel
	}
	return log.InfoLevel
}
