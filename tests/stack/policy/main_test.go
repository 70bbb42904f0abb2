package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// The cluster of every case: namespace app (pod web, container ports http=8080/TCP and
// dns=5353/UDP) and namespace client (pod cli, labelled role=cli; pod other, no labels).
const namespaces = `[
  {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"app","labels":{"kubernetes.io/metadata.name":"app"}}},
  {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"client","labels":{"team":"blue"}}}
]`

const pods = `[
  {"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"app","labels":{"app":"web"}},
   "spec":{"containers":[{"name":"c","image":"x","ports":[{"name":"http","containerPort":8080},{"name":"dns","containerPort":5353,"protocol":"UDP"}]}]},
   "status":{"phase":"Running","podIP":"10.244.0.10"}},
  {"apiVersion":"v1","kind":"Pod","metadata":{"name":"cli","namespace":"client","labels":{"role":"cli"}},
   "spec":{"containers":[{"name":"c","image":"x"}]},"status":{"phase":"Running","podIP":"10.244.0.20"}},
  {"apiVersion":"v1","kind":"Pod","metadata":{"name":"other","namespace":"client"},
   "spec":{"containers":[{"name":"c","image":"x"}]},"status":{"phase":"Running","podIP":"10.244.0.21"}}
]`

const (
	defaultDenyIngress = `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"deny-all","namespace":"app"},
  "spec":{"podSelector":{},"policyTypes":["Ingress"]}}`
	allow8080FromClient = `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"allow-8080","namespace":"app"},
  "spec":{"podSelector":{"matchLabels":{"app":"web"}},"policyTypes":["Ingress"],
   "ingress":[{"from":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"client"}}}],"ports":[{"port":8080,"protocol":"TCP"}]}]}}`
	allowNamedHTTP = `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"allow-http","namespace":"app"},
  "spec":{"podSelector":{"matchLabels":{"app":"web"}},"policyTypes":["Ingress"],"ingress":[{"ports":[{"port":"http"}]}]}}`
	allowRange = `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"allow-range","namespace":"app"},
  "spec":{"podSelector":{},"policyTypes":["Ingress"],"ingress":[{"ports":[{"port":30000,"endPort":30010}]}]}}`
	egressDenyExceptDNS = `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"egress-web-only","namespace":"client"},
  "spec":{"podSelector":{},"policyTypes":["Egress"],
   "egress":[{"to":[{"ipBlock":{"cidr":"10.244.0.0/24","except":["10.244.0.20/32"]}}],"ports":[{"port":8080}]}]}}`
	// role NotIn (admin): Kubernetes matches pods WITHOUT the role label too.
	allowNotInAdmin = `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"allow-not-admin","namespace":"app"},
  "spec":{"podSelector":{},"policyTypes":["Ingress"],
   "ingress":[{"from":[{"namespaceSelector":{},"podSelector":{"matchExpressions":[{"key":"role","operator":"NotIn","values":["admin"]}]}}]}]}}`
)

type row struct {
	from, to string // "ns/pod" or an IP
	port     any    // int or port name
	proto    string
	allowed  bool
	// optional expectations on attribution (nil: not checked)
	ingressSelectedBy, ingressAllowedBy []string
}

func peerJSON(s string) map[string]string {
	if ns, pod, ok := strings.Cut(s, "/"); ok {
		return map[string]string{"namespace": ns, "pod": pod}
	}
	return map[string]string{"ip": s}
}

func doc(t *testing.T, policies []string, rows []row) []byte {
	t.Helper()
	var probes []map[string]any
	for _, r := range rows {
		p := map[string]any{"from": peerJSON(r.from), "to": peerJSON(r.to), "port": r.port}
		if r.proto != "" {
			p["protocol"] = r.proto
		}
		probes = append(probes, p)
	}
	pj, err := json.Marshal(probes)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(`{"networkPolicies":[` + strings.Join(policies, ",") + `],"pods":` + pods +
		`,"namespaces":` + namespaces + `,"probes":` + string(pj) + `}`)
}

func TestTruthTable(t *testing.T) {
	cases := []struct {
		name     string
		policies []string
		rows     []row
	}{
		{"no policy allows everything", nil, []row{
			{from: "client/cli", to: "app/web", port: 8080, allowed: true, ingressSelectedBy: []string{}, ingressAllowedBy: []string{}},
			{from: "203.0.113.5", to: "app/web", port: 9999, allowed: true},
		}},
		{"default deny in a namespace denies", []string{defaultDenyIngress}, []row{
			{from: "client/cli", to: "app/web", port: 8080, allowed: false,
				ingressSelectedBy: []string{"app/deny-all"}, ingressAllowedBy: []string{}},
			{from: "203.0.113.5", to: "app/web", port: 8080, allowed: false},
			// only ingress into app is isolated: app's pod may still connect out
			{from: "app/web", to: "client/cli", port: 80, allowed: true, ingressSelectedBy: []string{}},
		}},
		{"an allow rule on a port allows only that port", []string{defaultDenyIngress, allow8080FromClient}, []row{
			{from: "client/cli", to: "app/web", port: 8080, allowed: true,
				ingressSelectedBy: []string{"app/deny-all", "app/allow-8080"}, ingressAllowedBy: []string{"app/allow-8080"}},
			{from: "client/other", to: "app/web", port: 8080, allowed: true},
			{from: "client/cli", to: "app/web", port: 8081, allowed: false, ingressAllowedBy: []string{}},
			{from: "client/cli", to: "app/web", port: 8080, proto: "UDP", allowed: false},
			{from: "app/web", to: "app/web", port: 8080, allowed: false}, // not from namespace client
			{from: "203.0.113.5", to: "app/web", port: 8080, allowed: false},
		}},
		{"a named port matches the destination's port of that name", []string{allowNamedHTTP}, []row{
			{from: "client/cli", to: "app/web", port: 8080, allowed: true, ingressAllowedBy: []string{"app/allow-http"}},
			{from: "client/cli", to: "app/web", port: "http", allowed: true},
			{from: "client/cli", to: "app/web", port: 8081, allowed: false},
			{from: "client/cli", to: "app/web", port: 5353, proto: "UDP", allowed: false}, // named dns, not http
		}},
		{"endPort allows the whole range and nothing outside it", []string{allowRange}, []row{
			{from: "client/cli", to: "app/web", port: 30000, allowed: true},
			{from: "client/cli", to: "app/web", port: 30005, allowed: true},
			{from: "client/cli", to: "app/web", port: 30010, allowed: true},
			{from: "client/cli", to: "app/web", port: 29999, allowed: false},
			{from: "client/cli", to: "app/web", port: 30011, allowed: false},
			{from: "client/cli", to: "app/web", port: 30005, proto: "UDP", allowed: false},
		}},
		{"egress with ipBlock and except", []string{egressDenyExceptDNS}, []row{
			{from: "client/cli", to: "app/web", port: 8080, allowed: true},
			{from: "client/cli", to: "app/web", port: 9090, allowed: false},
			{from: "client/other", to: "client/cli", port: 8080, allowed: false}, // 10.244.0.20 is excepted
			{from: "client/cli", to: "203.0.113.5", port: 8080, allowed: false},
			{from: "app/web", to: "203.0.113.5", port: 8080, allowed: true}, // app is not isolated for egress
		}},
		{"NotIn matches pods without the key, as in Kubernetes", []string{defaultDenyIngress, allowNotInAdmin}, []row{
			{from: "client/cli", to: "app/web", port: 8080, allowed: true},
			{from: "client/other", to: "app/web", port: 8080, allowed: true, ingressAllowedBy: []string{"app/allow-not-admin"}},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := run(doc(t, c.policies, c.rows), &out); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != len(c.rows) {
				t.Fatalf("got %d lines for %d probes:\n%s", len(lines), len(c.rows), out.String())
			}
			for i, r := range c.rows {
				var got Result
				if err := json.Unmarshal([]byte(lines[i]), &got); err != nil {
					t.Fatal(err)
				}
				id := func() string { return lines[i] }
				if got.Allowed != r.allowed {
					t.Errorf("row %d: allowed=%t, want %t: %s", i, got.Allowed, r.allowed, id())
				}
				if got.Allowed != (got.Ingress.Allowed && got.Egress.Allowed) {
					t.Errorf("row %d: allowed is not ingress && egress: %s", i, id())
				}
				if r.ingressSelectedBy != nil && !reflect.DeepEqual(got.Ingress.SelectedBy, r.ingressSelectedBy) {
					t.Errorf("row %d: ingress.selectedBy=%v, want %v", i, got.Ingress.SelectedBy, r.ingressSelectedBy)
				}
				if r.ingressAllowedBy != nil && !reflect.DeepEqual(got.Ingress.AllowedBy, r.ingressAllowedBy) {
					t.Errorf("row %d: ingress.allowedBy=%v, want %v", i, got.Ingress.AllowedBy, r.ingressAllowedBy)
				}
			}
		})
	}
}

func TestNamedPortResolution(t *testing.T) {
	var out bytes.Buffer
	if err := run(doc(t, nil, []row{{from: "client/cli", to: "app/web", port: "http"}, {from: "client/cli", to: "app/web", port: 5353, proto: "udp"}}), &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var a, b Result
	_ = json.Unmarshal([]byte(lines[0]), &a)
	_ = json.Unmarshal([]byte(lines[1]), &b)
	if a.ResolvedPort != 8080 || a.ResolvedPortName != "http" || a.Probe.Protocol != "TCP" {
		t.Errorf("named port: %s", lines[0])
	}
	if b.ResolvedPort != 5353 || b.ResolvedPortName != "dns" || b.Probe.Protocol != "UDP" {
		t.Errorf("numeric port: %s", lines[1])
	}
}

func TestBadInput(t *testing.T) {
	good := func(probes string) string {
		return `{"networkPolicies":[],"pods":` + pods + `,"namespaces":` + namespaces + `,"probes":` + probes + `}`
	}
	cases := map[string]struct{ in, want string }{
		"empty":            {"", "no input"},
		"not json":         {"{nope", "input"},
		"unknown field":    {`{"policies":[]}`, `unknown field "policies"`},
		"two documents":    {good(`[{"from":{"ip":"1.2.3.4"},"to":{"ip":"1.2.3.5"},"port":1}]`) + "{}", "after the first JSON document"},
		"no probes":        {good(`[]`), "probes is empty"},
		"unknown pod":      {good(`[{"from":{"namespace":"app","pod":"nope"},"to":{"ip":"1.2.3.4"},"port":80}]`), "pod app/nope is not in pods"},
		"bad ip":           {good(`[{"from":{"ip":"300.1.1.1"},"to":{"ip":"1.2.3.4"},"port":80}]`), "not an IP address"},
		"no port":          {good(`[{"from":{"ip":"1.2.3.4"},"to":{"ip":"1.2.3.5"}}]`), "port is required"},
		"bad protocol":     {good(`[{"from":{"ip":"1.2.3.4"},"to":{"ip":"1.2.3.5"},"port":80,"protocol":"ICMP"}]`), "none of TCP, UDP, SCTP"},
		"unknown name":     {good(`[{"from":{"ip":"1.2.3.4"},"to":{"namespace":"app","pod":"web"},"port":"https"}]`), `no TCP container port of that name`},
		"name to an ip":    {good(`[{"from":{"ip":"1.2.3.4"},"to":{"ip":"1.2.3.5"},"port":"http"}]`), "needs a pod as destination"},
		"probe field typo": {good(`[{"from":{"ip":"1.2.3.4"},"too":{"ip":"1.2.3.5"},"port":80}]`), `unknown field "too"`},
		"wrong kind": {`{"networkPolicies":` + pods + `,"pods":[],"namespaces":[],"probes":[]}`,
			"networkPolicies[0]: kind is Pod, expected NetworkPolicy"},
		"missing namespace": {`{"pods":` + pods + `,"namespaces":[],"probes":[]}`, `namespace "app" of pod app/web is not in namespaces`},
		"bad endPort": {`{"networkPolicies":[{"metadata":{"name":"p","namespace":"app"},"spec":{"podSelector":{},"policyTypes":["Ingress"],"ingress":[{"ports":[{"port":90,"endPort":80}]}]}}],"probes":[]}`,
			"networkPolicies[0] (app/p): invalid NetworkPolicy: invalid port range"},
		"bad selector": {`{"networkPolicies":[{"metadata":{"name":"p","namespace":"app"},"spec":{"podSelector":{"matchExpressions":[{"key":"a","operator":"Near"}]},"policyTypes":["Ingress"]}}],"probes":[]}`,
			`networkPolicies[0] (app/p): spec.podSelector: "Near" is not a valid label selector operator`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			err := run([]byte(c.in), &out)
			if err == nil {
				t.Fatalf("no error; output %s", out.String())
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			if out.Len() != 0 {
				t.Errorf("partial output: %s", out.String())
			}
		})
	}
}
