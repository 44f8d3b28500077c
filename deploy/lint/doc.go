// Package lint checks ClusterKit's deployment files without a container engine: the Dockerfile
// (parsed by BuildKit's parser), the compose files (loaded and validated by compose-go, as
// `docker compose` does) and the Kubernetes manifests (decoded strictly into the API types),
// and, beyond their syntax, that they agree with the node command: every variable they set is a
// setting it reads, addresses name the containers that serve them, exactly one node bootstraps
// the embedded etcd, data lives on volumes and the ports follow the node's port rules. The
// monitoring files, the Grafana dashboard and the Prometheus alert rules, are decoded strictly
// by the Grafana Foundation SDK's dashboard types and loaded by Prometheus' rule loader, and
// every PromQL expression in them is parsed by Prometheus' parser; cmd/promqueries lists the
// metrics they read, which the main module's test/monitoring compares with a running node's.
//
// It is a module of its own so that the main module does not depend on these parsers and
// loaders. Its
// tests run the checks on the repository's files and on broken copies of them; the command
// cmd/deployenv prints the environment each container of a file gets, for the end-to-end test
// that runs the same configuration as processes.
package lint
