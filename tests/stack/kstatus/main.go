// Command gatehouse-kstatus computes the kstatus status (sigs.k8s.io/cli-utils
// pkg/kstatus/status.Compute: the rules kubectl wait, kpt and Flux follow) of Kubernetes
// objects, so that Gatehouse's tests can check that what the operator writes is read the
// way those tools read it, without reimplementing the rules.
//
// Input (stdin): one JSON document, either a single object or a list (`kubectl get -o
// json` output: an object whose kind ends in "List" with an `items` array).
// Output (stdout): one JSON object per input object, one per line, in input order:
//
//	{"apiVersion":"...","kind":"...","namespace":"...","name":"...","status":"Current","message":"..."}
//
// status is kstatus's string: InProgress, Failed, Current, Terminating, NotFound or Unknown.
// On malformed input it prints a message to stderr and exits 1; 2 for usage errors.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sjson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	Message    string `json:"message"`
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "-h", "-help", "--help":
			fmt.Fprintln(os.Stdout, "usage: gatehouse-kstatus < object-or-list.json\n"+
				"Prints one JSON line per object: apiVersion, kind, namespace, name, status (kstatus), message.")
			return
		}
		fmt.Fprintf(os.Stderr, "gatehouse-kstatus: takes no arguments (reads JSON on stdin); got %q\n", os.Args[1:])
		os.Exit(2)
	}
	data, err := io.ReadAll(os.Stdin)
	if err == nil {
		err = run(data, os.Stdout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gatehouse-kstatus: %v\n", err)
		os.Exit(1)
	}
}

func run(data []byte, out io.Writer) error {
	objects, err := parse(data)
	if err != nil {
		return err
	}
	// Compute everything first, so that bad input gives no partial output.
	results := make([]result, 0, len(objects))
	for i, obj := range objects {
		u := &unstructured.Unstructured{Object: obj}
		id := fmt.Sprintf("object %d (%s %s/%s)", i, u.GetKind(), u.GetNamespace(), u.GetName())
		if u.GetAPIVersion() == "" || u.GetKind() == "" {
			return fmt.Errorf("%s: apiVersion and kind are required", id)
		}
		if u.GetName() == "" {
			return fmt.Errorf("%s: metadata.name is required", id)
		}
		res, err := status.Compute(u)
		if err != nil {
			return fmt.Errorf("%s: kstatus: %w", id, err)
		}
		results = append(results, result{
			APIVersion: u.GetAPIVersion(),
			Kind:       u.GetKind(),
			Namespace:  u.GetNamespace(),
			Name:       u.GetName(),
			Status:     res.Status.String(),
			Message:    res.Message,
		})
	}
	enc := json.NewEncoder(out)
	for _, r := range results {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

// parse returns the objects of one JSON document: the document itself, or its items if
// it is a list. Numbers are decoded the way the API machinery does (integers as int64),
// which kstatus's field accessors require.
func parse(data []byte) ([]map[string]interface{}, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("no input: expected a JSON object or list on stdin")
	}
	// One document only: reject trailing data (e.g. several concatenated objects).
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("input is not JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("input has data after the first JSON document: expected exactly one object or list")
	}
	var doc interface{}
	if err := k8sjson.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("input is not JSON: %w", err)
	}
	obj, ok := doc.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("input is a JSON %s, expected an object or a list", jsonType(doc))
	}
	kind, _ := obj["kind"].(string)
	items, hasItems := obj["items"]
	if !hasItems || !strings.HasSuffix(kind, "List") {
		return []map[string]interface{}{obj}, nil
	}
	list, ok := items.([]interface{})
	if !ok {
		if items == nil { // "items": null, as some clients write an empty list
			return nil, nil
		}
		return nil, fmt.Errorf("%s: items is a JSON %s, expected an array", kind, jsonType(items))
	}
	objects := make([]map[string]interface{}, 0, len(list))
	for i, item := range list {
		o, ok := item.(map[string]interface{})
		if !ok {
			return nil, fmt.Errorf("%s: items[%d] is a JSON %s, expected an object", kind, i, jsonType(item))
		}
		objects = append(objects, o)
	}
	return objects, nil
}

func jsonType(v interface{}) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case []interface{}:
		return "array"
	case map[string]interface{}:
		return "object"
	default:
		return "number"
	}
}
