// kstatus reads Kubernetes objects as JSON on stdin (one object, a List, or several objects
// one after another) and prints, per object, the status that kstatus (sigs.k8s.io/cli-utils,
// the library behind Flux's and kpt's waiting and `kubectl wait`-like tools) computes for it:
// one JSON line {"kind", "name", "status", "message"}. tests/e2e/test_kstatus.py runs it
// against real Landings, LandingSets and LandingPolicies.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	dec := json.NewDecoder(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			fmt.Fprintln(os.Stderr, "kstatus: reading stdin:", err)
			os.Exit(2)
		}
		// Numbers as int64 where they are integers, as the API machinery reads them.
		var obj map[string]interface{}
		if err := utiljson.Unmarshal(raw, &obj); err != nil {
			fmt.Fprintln(os.Stderr, "kstatus: reading stdin:", err)
			os.Exit(2)
		}
		items := []interface{}{obj}
		if list, ok := obj["items"].([]interface{}); ok {
			items = list
		}
		for _, item := range items {
			u := &unstructured.Unstructured{Object: item.(map[string]interface{})}
			res, err := status.Compute(u)
			if err != nil {
				fmt.Fprintln(os.Stderr, "kstatus:", u.GetKind(), u.GetName(), err)
				os.Exit(1)
			}
			if err := out.Encode(result{u.GetKind(), u.GetName(), res.Status.String(), res.Message}); err != nil {
				fmt.Fprintln(os.Stderr, "kstatus: writing:", err)
				os.Exit(2)
			}
		}
	}
}
