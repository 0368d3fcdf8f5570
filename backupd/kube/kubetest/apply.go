package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

// DefaultNamespace is where Apply puts a namespaced object whose manifest
// names no namespace, as kubectl does with its default context.
const DefaultNamespace = "default"

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// Apply server-side applies every document of yamlDocs (multi-document
// YAML, "---"-separated; empty documents and Lists are handled) in order,
// as fieldManager, with conflicts forced, and fails the test on the first
// refusal. It returns the objects as the apiserver stored them.
func (e *Env) Apply(t testing.TB, ctx context.Context, yamlDocs []byte, fieldManager string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := e.TryApply(ctx, yamlDocs, fieldManager)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TryApply is Apply returning the first refusal as an error, naming the
// object; the apiserver's error (a *errors.StatusError) is wrapped. The
// objects before it stay applied.
func (e *Env) TryApply(ctx context.Context, yamlDocs []byte, fieldManager string) ([]*unstructured.Unstructured, error) {
	objs, err := Decode(yamlDocs)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, o := range objs {
		got, err := e.applyOne(ctx, o, fieldManager)
		if err != nil {
			return out, fmt.Errorf("apply %s %s: %w", o.GetKind(), objName(o), err)
		}
		out = append(out, got)
	}
	return out, nil
}

// Decode splits multi-document YAML (or JSON) into objects, flattening
// Lists and dropping empty documents.
func Decode(yamlDocs []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(yamlDocs), 4096)
	var objs []*unstructured.Unstructured
	for i := 0; ; i++ {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode document %d: %w", i, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.IsList() {
			l, err := u.ToList()
			if err != nil {
				return nil, fmt.Errorf("decode document %d: %w", i, err)
			}
			for j := range l.Items {
				objs = append(objs, &l.Items[j])
			}
			continue
		}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("decode document %d: no kind or apiVersion", i)
		}
		objs = append(objs, u)
	}
}

func objName(o *unstructured.Unstructured) string {
	if ns := o.GetNamespace(); ns != "" {
		return ns + "/" + o.GetName()
	}
	return o.GetName()
}

// resource maps an object's kind to its resource, resetting the discovery
// cache once when the kind is unknown (a CRD just installed).
func (e *Env) resource(ctx context.Context, gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	var m *meta.RESTMapping
	var last error
	// A CRD is established before discovery serves it: retry for a while.
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		m, last = e.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if last == nil {
			return true, nil
		}
		if !meta.IsNoMatchError(last) {
			return false, last
		}
		e.Mapper.Reset()
		return false, nil
	})
	if err != nil {
		if last != nil {
			return nil, fmt.Errorf("map kind %s: %w", gvk, last)
		}
		return nil, fmt.Errorf("map kind %s: %w", gvk, err)
	}
	return m, nil
}

func (e *Env) applyOne(ctx context.Context, o *unstructured.Unstructured, fieldManager string) (*unstructured.Unstructured, error) {
	m, err := e.resource(ctx, o.GroupVersionKind())
	if err != nil {
		return nil, err
	}
	var ri dynamic.ResourceInterface = e.Dynamic.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if o.GetNamespace() == "" {
			o.SetNamespace(DefaultNamespace)
		}
		ri = e.Dynamic.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	got, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	if err != nil {
		return nil, err
	}
	if m.Resource == crdGVR {
		if err := e.waitEstablished(ctx, o.GetName()); err != nil {
			return nil, err
		}
		e.Mapper.Reset()
	}
	return got, nil
}

// waitEstablished waits for the CRD's Established condition (its names
// accepted and its kinds served).
func (e *Env) waitEstablished(ctx context.Context, name string) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		crd, err := e.Dynamic.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		for _, c := range conds {
			cm, _ := c.(map[string]any)
			if cm["type"] == "Established" && cm["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("wait for CRD %s to be established: %w", name, err)
	}
	return nil
}
