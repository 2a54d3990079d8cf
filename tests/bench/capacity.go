package main

import (
	"fmt"
	"strings"
)

// receiverURL is the receiver's base URL of scheme: its ready line names
// the https and the forward one.
func receiverURL(rcv *child, scheme string) string {
	for _, u := range strings.Fields(rcv.Ready) {
		if strings.HasPrefix(u, scheme+"://") {
			return u
		}
	}
	return rcv.Ready
}

// runCapacity measures a fresh receiver with the load generator, over
// https.
func runCapacity(o *options, lg *child, name string, batch, limit int) (result, error) {
	return runCapacityOver(o, "https", lg, name, batch, limit)
}

// runCapacityOver is runCapacity over scheme.
func runCapacityOver(o *options, scheme string, lg *child, name string, batch, limit int) (result, error) {
	step("%s: %d events", name, limit)
	rcv, err := startChild(o, "fluentd")
	if err != nil {
		return result{}, err
	}
	answer, err := lg.ask(fmt.Sprintf("run %s %d %d %d", receiverURL(rcv, scheme), o.conns, batch, limit))
	if err != nil {
		rcv.stop()
		return result{}, err
	}
	var r result
	var cpu float64
	if _, err := fmt.Sscanf(answer, "%d %d %f %d %f", &r.Events, &r.Posts, &r.Seconds, &r.Failures, &cpu); err != nil {
		rcv.stop()
		return result{}, fmt.Errorf("load generator: %q", answer)
	}
	stats, _ := rcv.ask("stats")
	var count, unique, requests, handshakes int
	fmt.Sscanf(stats, "%d %d %d %d", &count, &unique, &requests, &handshakes)
	rcvCPU := rcv.stop()
	r.Name, r.Kind = name, "capacity"
	r.Rate = float64(r.Events) / r.Seconds
	r.CPUPer10k = cpu / float64(r.Events) * 10000
	r.ReceiverCPUPer10k = rcvCPU / float64(r.Events) * 10000
	r.Duplicates = count - unique
	r.Missing = r.Events - unique
	r.Handshakes = handshakes
	step("  %d events in %d POSTs in %.1fs: %.0f events/s (load generator CPU %.2fs per 10k events, receiver %.2fs)",
		r.Events, r.Posts, r.Seconds, r.Rate, r.CPUPer10k, r.ReceiverCPUPer10k)
	return r, nil
}
