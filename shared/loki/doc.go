// Package loki owns shipping entries to Grafana Loki: one Dispatcher per
// endpoint configuration queues them in bounded memory, batches and pushes
// them (protobuf and snappy, retried with backoff), tells each producer how
// far its entries were resolved, and, with a spool, keeps in order on disk
// what memory and Loki do not take and replays it.
//
// The files follow the parts: dispatcher.go is the sender's loop and the
// spill interface it calls; queue.go (and ring.go) the memory queue;
// client.go and refusal.go one push and what Loki's answer means;
// overflow.go the spill without a spool; spoolset.go the spools dispatchers
// share, spooler.go the spill that spools, replayer.go the goroutine that
// reads a spool back; memory.go what a binary does once a backlog has
// drained (WithBacklogDrained). push.pb.go is generated from push.proto.
package loki
