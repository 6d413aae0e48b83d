// Package kubernetes holds winch's Kubernetes manifests (a kustomize base:
// kubectl apply -k ops/kubernetes) and the test that decodes each of them
// strictly with the Kubernetes API types and checks what refers to what.
// It has no Go code of its own.
package kubernetes
