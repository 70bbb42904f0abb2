// Command gatehouse-policy answers "would this connection be allowed?" for Kubernetes
// NetworkPolicies, with the rules of github.com/mattfenwick/cyclonus's matcher (the
// NetworkPolicy semantics behind its conformance suite: policy types, peers, ipBlock,
// ports, named ports, endPort). No enforcing CNI runs on the test node, so Gatehouse's tests
// check the policies it writes against this truth table instead of real packets.
//
// Input (stdin): one JSON document
//
//	{"networkPolicies": [...], "pods": [...], "namespaces": [...], "probes": [...]}
//
// networkPolicies, pods and namespaces hold the objects as the Kubernetes API returns them
// (an array, or a `kubectl get -o json` list with `items`). Each probe is
//
//	{"from": PEER, "to": PEER, "port": 80 or "http", "protocol": "TCP"}
//
// where PEER is {"namespace": "ns", "pod": "name"} (a pod of the input) or {"ip": "203.0.113.5"}
// (an address outside the cluster; policies never isolate it). A numeric port takes its
// name from the destination pod's container ports (for named-port rules); a named port must
// be one of the destination pod's. protocol defaults to TCP.
//
// Output (stdout): one JSON line per probe, in input order:
//
//	{"probe":{...},"resolvedPort":80,"resolvedPortName":"http","allowed":false,
//	 "ingress":{"allowed":false,"selectedBy":["ns/deny-all"],"allowedBy":[]},
//	 "egress":{"allowed":true,"selectedBy":[],"allowedBy":[]}}
//
// allowed is ingress.allowed && egress.allowed. For each direction, selectedBy lists the
// policies (namespace/name) that select the pod on that side (the pod is isolated for that
// direction if any do) and allowedBy those among them whose rules allow this connection;
// a direction allows when no policy selects the pod or at least one of them allows it.
//
// Where cyclonus v0.5.6 differs from Kubernetes it is corrected here: its label selectors
// treat `NotIn` as false for objects without the key, whereas Kubernetes matches them; such
// selectors are evaluated with apimachinery's selector instead (see rewriteNotIn).
//
// On malformed input it prints a message to stderr and exits 1 (no partial output); 2 for
// usage errors.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "-h", "-help", "--help":
			fmt.Fprintln(os.Stdout, "usage: gatehouse-policy < input.json\n"+
				`Input: {"networkPolicies":[...],"pods":[...],"namespaces":[...],"probes":[{"from":{"namespace":"ns","pod":"p"}|{"ip":"IP"},"to":...,"port":80|"name","protocol":"TCP"}]}`+"\n"+
				"Prints one JSON line per probe: the probe, allowed, and the ingress and egress verdicts with the policies that decided.")
			return
		}
		fmt.Fprintf(os.Stderr, "gatehouse-policy: takes no arguments (reads JSON on stdin); got %q\n", os.Args[1:])
		os.Exit(2)
	}
	data, err := io.ReadAll(os.Stdin)
	if err == nil {
		err = run(data, os.Stdout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gatehouse-policy: %v\n", err)
		os.Exit(1)
	}
}

// Peer is one end of a probe: a pod of the input, or an address outside the cluster.
type Peer struct {
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	IP        string `json:"ip,omitempty"`
}

// Probe is one connection to judge.
type Probe struct {
	From     *Peer               `json:"from"`
	To       *Peer               `json:"to"`
	Port     *intstr.IntOrString `json:"port"`
	Protocol string              `json:"protocol,omitempty"`
}

// Direction is the verdict of one side: ingress at the destination, egress at the source.
type Direction struct {
	Allowed    bool     `json:"allowed"`
	SelectedBy []string `json:"selectedBy"`
	AllowedBy  []string `json:"allowedBy"`
}

// Result is one output line.
type Result struct {
	Probe            Probe     `json:"probe"`
	ResolvedPort     int       `json:"resolvedPort"`
	ResolvedPortName string    `json:"resolvedPortName,omitempty"`
	Allowed          bool      `json:"allowed"`
	Ingress          Direction `json:"ingress"`
	Egress           Direction `json:"egress"`
}

type input struct {
	NetworkPolicies json.RawMessage `json:"networkPolicies"`
	Pods            json.RawMessage `json:"pods"`
	Namespaces      json.RawMessage `json:"namespaces"`
	Probes          []Probe         `json:"probes"`
}

func run(data []byte, out io.Writer) error {
	results, err := evaluate(data)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	for _, r := range results {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

// world is the decoded input, ready for cyclonus.
type world struct {
	policies   []*networkingv1.NetworkPolicy // as cyclonus gets them (NotIn selectors rewritten)
	names      []string                      // namespace/name of policies[i]
	pods       map[string]*corev1.Pod        // by namespace/name
	podLabels  map[string]map[string]string  // by namespace/name, with the rewrite's labels
	namespaces map[string]map[string]string  // labels by name, with the rewrite's labels
	combined   *matcher.Policy               // all policies
	single     []*matcher.Policy             // policies[i] alone, for attribution
}

func evaluate(data []byte) ([]Result, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New(`no input: expected one JSON object {"networkPolicies":[...],"pods":[...],"namespaces":[...],"probes":[...]} on stdin`)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields() // top level and probes; the objects are decoded leniently below
	var in input
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("input has data after the first JSON document")
	}
	w, err := newWorld(&in)
	if err != nil {
		return nil, err
	}
	if len(in.Probes) == 0 {
		return nil, errors.New("input: probes is empty: nothing to judge")
	}
	results := make([]Result, 0, len(in.Probes))
	for i, p := range in.Probes {
		r, err := w.judge(p)
		if err != nil {
			return nil, fmt.Errorf("probes[%d]: %w", i, err)
		}
		results = append(results, r)
	}
	return results, nil
}

func newWorld(in *input) (*world, error) {
	policies, err := decodeObjects[networkingv1.NetworkPolicy]("networkPolicies", "NetworkPolicy", in.NetworkPolicies)
	if err != nil {
		return nil, err
	}
	pods, err := decodeObjects[corev1.Pod]("pods", "Pod", in.Pods)
	if err != nil {
		return nil, err
	}
	namespaces, err := decodeObjects[corev1.Namespace]("namespaces", "Namespace", in.Namespaces)
	if err != nil {
		return nil, err
	}

	w := &world{
		pods:       map[string]*corev1.Pod{},
		podLabels:  map[string]map[string]string{},
		namespaces: map[string]map[string]string{},
	}
	for i := range namespaces {
		ns := &namespaces[i]
		if ns.Name == "" {
			return nil, fmt.Errorf("namespaces[%d]: metadata.name is required", i)
		}
		if _, dup := w.namespaces[ns.Name]; dup {
			return nil, fmt.Errorf("namespaces[%d]: namespace %q given twice", i, ns.Name)
		}
		l := copyLabels(ns.Labels)
		// The API server sets this label on every namespace (since 1.21); hand-made input
		// may leave it out.
		if _, ok := l[corev1.LabelMetadataName]; !ok {
			l[corev1.LabelMetadataName] = ns.Name
		}
		w.namespaces[ns.Name] = l
	}
	for i := range pods {
		pod := &pods[i]
		if pod.Name == "" || pod.Namespace == "" {
			return nil, fmt.Errorf("pods[%d]: metadata.name and metadata.namespace are required", i)
		}
		key := pod.Namespace + "/" + pod.Name
		if _, dup := w.pods[key]; dup {
			return nil, fmt.Errorf("pods[%d]: pod %s given twice", i, key)
		}
		if _, ok := w.namespaces[pod.Namespace]; !ok {
			return nil, fmt.Errorf("pods[%d]: the namespace %q of pod %s is not in namespaces (its labels are needed for namespaceSelectors)", i, pod.Namespace, key)
		}
		w.pods[key] = pod
		w.podLabels[key] = copyLabels(pod.Labels)
	}
	seen := map[string]bool{}
	rw := &rewriter{}
	for i := range policies {
		np := policies[i].DeepCopy()
		if np.Name == "" || np.Namespace == "" {
			return nil, fmt.Errorf("networkPolicies[%d]: metadata.name and metadata.namespace are required", i)
		}
		name := np.Namespace + "/" + np.Name
		if seen[name] {
			return nil, fmt.Errorf("networkPolicies[%d]: policy %s given twice", i, name)
		}
		seen[name] = true
		if err := normalize(np); err != nil {
			return nil, fmt.Errorf("networkPolicies[%d] (%s): %w", i, name, err)
		}
		if err := rw.policy(np); err != nil {
			return nil, fmt.Errorf("networkPolicies[%d] (%s): %w", i, name, err)
		}
		single, err := build([]*networkingv1.NetworkPolicy{np})
		if err != nil {
			return nil, fmt.Errorf("networkPolicies[%d] (%s): %w", i, name, err)
		}
		w.policies = append(w.policies, np)
		w.names = append(w.names, name)
		w.single = append(w.single, single)
	}
	rw.label(w.podLabels, w.namespaces)
	if w.combined, err = build(w.policies); err != nil {
		return nil, err
	}
	return w, nil
}

// normalize applies the API server's defaulting of policyTypes (the API always returns it
// set; cyclonus panics without it) and checks what cyclonus does not.
func normalize(np *networkingv1.NetworkPolicy) error {
	if len(np.Spec.PolicyTypes) == 0 {
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(np.Spec.Egress) > 0 {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
	for _, t := range np.Spec.PolicyTypes {
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			return fmt.Errorf("spec.policyTypes: %q is neither Ingress nor Egress", t)
		}
	}
	checkPorts := func(where string, ports []networkingv1.NetworkPolicyPort) error {
		for j, p := range ports {
			if p.Protocol != nil {
				if _, err := protocol(string(*p.Protocol)); err != nil {
					return fmt.Errorf("%s.ports[%d]: %w", where, j, err)
				}
			}
		}
		return nil
	}
	checkPeers := func(where string, peers []networkingv1.NetworkPolicyPeer) error {
		for j, p := range peers {
			if p.IPBlock != nil {
				if _, _, err := net.ParseCIDR(p.IPBlock.CIDR); err != nil {
					return fmt.Errorf("%s[%d].ipBlock.cidr: %w", where, j, err)
				}
				for k, e := range p.IPBlock.Except {
					if _, _, err := net.ParseCIDR(e); err != nil {
						return fmt.Errorf("%s[%d].ipBlock.except[%d]: %w", where, j, k, err)
					}
				}
			}
		}
		return nil
	}
	for i, r := range np.Spec.Ingress {
		if err := checkPorts(fmt.Sprintf("spec.ingress[%d]", i), r.Ports); err != nil {
			return err
		}
		if err := checkPeers(fmt.Sprintf("spec.ingress[%d].from", i), r.From); err != nil {
			return err
		}
	}
	for i, r := range np.Spec.Egress {
		if err := checkPorts(fmt.Sprintf("spec.egress[%d]", i), r.Ports); err != nil {
			return err
		}
		if err := checkPeers(fmt.Sprintf("spec.egress[%d].to", i), r.To); err != nil {
			return err
		}
	}
	return nil
}

// build runs cyclonus's builder, which panics on invalid policies (e.g. an empty peer, an
// endPort below its port).
func build(nps []*networkingv1.NetworkPolicy) (p *matcher.Policy, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("invalid NetworkPolicy: %v", r)
		}
	}()
	return matcher.BuildNetworkPolicies(false, nps), nil
}

func (w *world) judge(p Probe) (Result, error) {
	proto, err := protocol(p.Protocol)
	if err != nil {
		return Result{}, err
	}
	p.Protocol = string(proto)
	if p.Port == nil {
		return Result{}, errors.New("port is required")
	}
	src, _, err := w.peer(p.From, "from")
	if err != nil {
		return Result{}, err
	}
	dst, dstPod, err := w.peer(p.To, "to")
	if err != nil {
		return Result{}, err
	}
	port, portName, err := resolvePort(*p.Port, proto, dstPod)
	if err != nil {
		return Result{}, err
	}
	traffic := &matcher.Traffic{
		Source: src, Destination: dst,
		ResolvedPort: port, ResolvedPortName: portName, Protocol: proto,
	}
	overall, err := allowed(w.combined, traffic)
	if err != nil {
		return Result{}, err
	}
	r := Result{
		Probe: p, ResolvedPort: port, ResolvedPortName: portName,
		Allowed: overall.IsAllowed(),
		Ingress: Direction{Allowed: overall.Ingress.IsAllowed(), SelectedBy: []string{}, AllowedBy: []string{}},
		Egress:  Direction{Allowed: overall.Egress.IsAllowed(), SelectedBy: []string{}, AllowedBy: []string{}},
	}
	// Which policies decided: each policy alone, through the same matcher.
	for i, single := range w.single {
		res, err := allowed(single, traffic)
		if err != nil {
			return Result{}, err
		}
		for _, d := range []struct {
			res *matcher.DirectionResult
			out *Direction
		}{{res.Ingress, &r.Ingress}, {res.Egress, &r.Egress}} {
			if len(d.res.AllowingTargets)+len(d.res.DenyingTargets) > 0 {
				d.out.SelectedBy = append(d.out.SelectedBy, w.names[i])
			}
			if len(d.res.AllowingTargets) > 0 {
				d.out.AllowedBy = append(d.out.AllowedBy, w.names[i])
			}
		}
	}
	for _, d := range []*Direction{&r.Ingress, &r.Egress} {
		if d.Allowed != (len(d.SelectedBy) == 0 || len(d.AllowedBy) > 0) {
			return Result{}, fmt.Errorf("internal error: the combined verdict (allowed=%t) disagrees with the policies one by one (selectedBy %v, allowedBy %v)", d.Allowed, d.SelectedBy, d.AllowedBy)
		}
	}
	return r, nil
}

func allowed(p *matcher.Policy, t *matcher.Traffic) (res *matcher.AllowedResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cyclonus matcher: %v", r)
			for _, peer := range []*matcher.TrafficPeer{t.Source, t.Destination} {
				if peer.Internal != nil && peer.IP == "" {
					err = fmt.Errorf("%w (a pod of the probe has no status.podIP, which ipBlock rules need)", err)
					break
				}
			}
		}
	}()
	return p.IsTrafficAllowed(t), nil
}

func (w *world) peer(e *Peer, field string) (*matcher.TrafficPeer, *corev1.Pod, error) {
	switch {
	case e == nil:
		return nil, nil, fmt.Errorf("%s is required", field)
	case e.IP != "":
		if e.Namespace != "" || e.Pod != "" {
			return nil, nil, fmt.Errorf("%s: give either ip or namespace+pod, not both", field)
		}
		if net.ParseIP(e.IP) == nil {
			return nil, nil, fmt.Errorf("%s.ip: %q is not an IP address", field, e.IP)
		}
		return &matcher.TrafficPeer{IP: e.IP}, nil, nil
	case e.Namespace == "" || e.Pod == "":
		return nil, nil, fmt.Errorf(`%s: expected {"namespace":..., "pod":...} or {"ip":...}`, field)
	}
	key := e.Namespace + "/" + e.Pod
	pod, ok := w.pods[key]
	if !ok {
		return nil, nil, fmt.Errorf("%s: pod %s is not in pods", field, key)
	}
	return &matcher.TrafficPeer{
		IP: pod.Status.PodIP,
		Internal: &matcher.InternalPeer{
			Namespace:       pod.Namespace,
			PodLabels:       w.podLabels[key],
			NamespaceLabels: w.namespaces[pod.Namespace],
		},
	}, pod, nil
}

func protocol(s string) (corev1.Protocol, error) {
	switch p := corev1.Protocol(strings.ToUpper(s)); p {
	case "":
		return corev1.ProtocolTCP, nil
	case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		return p, nil
	}
	return "", fmt.Errorf("protocol %q is none of TCP, UDP, SCTP", s)
}

// resolvePort gives the port number and the destination pod's name for it: a named-port
// rule matches by that name (on the destination pod, for ingress and egress alike).
func resolvePort(port intstr.IntOrString, proto corev1.Protocol, dst *corev1.Pod) (int, string, error) {
	var ports []corev1.ContainerPort
	if dst != nil {
		for _, c := range dst.Spec.InitContainers {
			ports = append(ports, c.Ports...)
		}
		for _, c := range dst.Spec.Containers {
			ports = append(ports, c.Ports...)
		}
	}
	sameProto := func(cp corev1.ContainerPort) bool {
		return cp.Protocol == proto || (cp.Protocol == "" && proto == corev1.ProtocolTCP)
	}
	if port.Type == intstr.String {
		if dst == nil {
			return 0, "", fmt.Errorf("port %q: a named port needs a pod as destination", port.StrVal)
		}
		for _, cp := range ports {
			if cp.Name == port.StrVal && sameProto(cp) {
				return int(cp.ContainerPort), cp.Name, nil
			}
		}
		return 0, "", fmt.Errorf("port %q: pod %s/%s has no %s container port of that name", port.StrVal, dst.Namespace, dst.Name, proto)
	}
	n := int(port.IntVal)
	if n < 1 || n > 65535 {
		return 0, "", fmt.Errorf("port %d is out of range 1-65535", n)
	}
	for _, cp := range ports {
		if int(cp.ContainerPort) == n && sameProto(cp) {
			return n, cp.Name, nil
		}
	}
	return n, "", nil
}

// rewriter works around cyclonus v0.5.6's label selectors, which treat `NotIn` as false when
// the object lacks the key (Kubernetes: true, see labels.Selector). Each selector with a
// NotIn requirement is evaluated by apimachinery against every pod or namespace of the
// input, and replaced, for cyclonus, by a matchLabels on a synthetic label that exactly the
// matching objects get. Other selectors go to cyclonus unchanged.
type rewriter struct {
	pod, ns []labels.Selector
}

const syntheticLabel = "gatehouse-policy.invalid/notin-selector-"

func (r *rewriter) policy(np *networkingv1.NetworkPolicy) error {
	if err := r.selector(&np.Spec.PodSelector, false, "spec.podSelector"); err != nil {
		return err
	}
	peers := func(where string, ps []networkingv1.NetworkPolicyPeer) error {
		for j := range ps {
			if ps[j].PodSelector != nil {
				if err := r.selector(ps[j].PodSelector, false, fmt.Sprintf("%s[%d].podSelector", where, j)); err != nil {
					return err
				}
			}
			if ps[j].NamespaceSelector != nil {
				if err := r.selector(ps[j].NamespaceSelector, true, fmt.Sprintf("%s[%d].namespaceSelector", where, j)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for i := range np.Spec.Ingress {
		if err := peers(fmt.Sprintf("spec.ingress[%d].from", i), np.Spec.Ingress[i].From); err != nil {
			return err
		}
	}
	for i := range np.Spec.Egress {
		if err := peers(fmt.Sprintf("spec.egress[%d].to", i), np.Spec.Egress[i].To); err != nil {
			return err
		}
	}
	return nil
}

func (r *rewriter) selector(ls *metav1.LabelSelector, namespaces bool, where string) error {
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	notIn := false
	for _, e := range ls.MatchExpressions {
		notIn = notIn || e.Operator == metav1.LabelSelectorOpNotIn
	}
	if !notIn {
		return nil
	}
	list := &r.pod
	kind := "pod"
	if namespaces {
		list, kind = &r.ns, "ns"
	}
	*list = append(*list, sel)
	*ls = metav1.LabelSelector{MatchLabels: map[string]string{
		fmt.Sprintf("%s%s-%d", syntheticLabel, kind, len(*list)-1): "true",
	}}
	return nil
}

// label gives every pod and namespace the synthetic labels of the selectors that match it.
func (r *rewriter) label(pods, namespaces map[string]map[string]string) {
	apply := func(objs map[string]map[string]string, sels []labels.Selector, kind string) {
		for _, l := range objs {
			set := labels.Set(copyLabels(l))
			for i, sel := range sels {
				if sel.Matches(set) {
					l[fmt.Sprintf("%s%s-%d", syntheticLabel, kind, i)] = "true"
				}
			}
		}
	}
	apply(pods, r.pod, "pod")
	apply(namespaces, r.ns, "ns")
}

func copyLabels(l map[string]string) map[string]string {
	c := make(map[string]string, len(l)+1)
	for k, v := range l {
		c[k] = v
	}
	return c
}

// decodeObjects decodes a field holding Kubernetes objects: an array, or a list object with
// items (kubectl get -o json). Objects are decoded leniently (fields this API version does
// not know are ignored); a kind, when given, must be the expected one.
func decodeObjects[T any](field, kind string, raw json.RawMessage) ([]T, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var items []json.RawMessage
	switch raw[0] {
	case '[':
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
	case '{':
		var list struct {
			Kind  string             `json:"kind"`
			Items *[]json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		if list.Items == nil {
			return nil, fmt.Errorf("%s: expected an array of %s objects or a list with items; got an object without items (kind %q)", field, kind, list.Kind)
		}
		items = *list.Items
	default:
		return nil, fmt.Errorf("%s: expected an array of %s objects or a list with items", field, kind)
	}
	out := make([]T, len(items))
	for i, item := range items {
		var head struct {
			Kind string `json:"kind"`
		}
		if err := json.Unmarshal(item, &head); err != nil {
			return nil, fmt.Errorf("%s[%d]: expected a %s object: %w", field, i, kind, err)
		}
		if head.Kind != "" && head.Kind != kind {
			return nil, fmt.Errorf("%s[%d]: kind is %s, expected %s", field, i, head.Kind, kind)
		}
		if err := json.Unmarshal(item, &out[i]); err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
	}
	return out, nil
}
