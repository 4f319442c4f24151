// Command loadgen sends OTLP trace batches to a collector over OTLP/HTTP at a fixed rate,
// with a bounded number of requests in flight: the load side of `make bench`.
//
// It reads the collector file exporter's `format: proto` files (4-byte big-endian length,
// then a TracesData message, which is wire-compatible with ExportTraceServiceRequest), holds
// every batch in memory, then posts batch i at start + i/rate. When the collector falls
// behind, sending blocks rather than queueing without bound; the summary says how far
// behind schedule the run ended. Any request that is not answered 2xx fails the run.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	endpoint := flag.String("endpoint", "http://127.0.0.1:4318/v1/traces", "OTLP/HTTP traces URL")
	rate := flag.Float64("rate", 50, "batches per second")
	inFlight := flag.Int("in-flight", 4, "most requests in flight at once")
	retry := flag.Duration("retry", 0, "retry a request that fails (no connection, 429, 502, 503, 504) for up to this long, backing off from 100ms to 1s, as an OTLP exporter does; 0: no retry")
	loops := flag.Int("loops", 1, "send the batches this many times; loop k > 0 XORs k into the first 4 bytes of every trace id, so each loop is new traces")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: loadgen [flags] FILE_OR_DIR...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 || *rate <= 0 || *inFlight < 1 || *loops < 1 {
		flag.Usage()
		os.Exit(2)
	}
	batches, err := readAll(flag.Args())
	if err == nil {
		// Every batch must be one whose trace ids can be rewritten; find out before sending.
		for _, b := range batches {
			if err = retrace(append([]byte(nil), b...), 1); err != nil {
				break
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	s, err := send(*endpoint, loop(batches, *loops), *rate, *inFlight, *retry)
	out, _ := json.Marshal(s)
	fmt.Println(string(out))
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// summary is what a run did, printed as one JSON object.
type summary struct {
	Batches     int     `json:"batches"`
	Bytes       int64   `json:"bytes"`
	Seconds     float64 `json:"seconds"`
	Failed      int64   `json:"failed"`
	Retried     int64   `json:"retried"`
	BehindAtEnd float64 `json:"behind_at_end_seconds"`
}

func send(endpoint string, batches source, rate float64, inFlight int, retry time.Duration) (summary, error) {
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: inFlight, MaxConnsPerHost: inFlight},
	}
	work := make(chan []byte)
	var failed, retried atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range inFlight {
		wg.Go(func() {
			for body := range work {
				err := post(client, endpoint, body)
				for wait, until := 100*time.Millisecond, time.Now().Add(retry); err != nil && retryable(err) && time.Now().Before(until); wait = min(2*wait, time.Second) {
					time.Sleep(wait)
					retried.Add(1)
					err = post(client, endpoint, body)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	var total int64
	n := batches.len()
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		body := batches.get(i)
		work <- body
		total += int64(len(body))
	}
	behind := time.Since(start.Add(time.Duration(n-1) * interval))
	close(work)
	wg.Wait()
	s := summary{
		Batches:     n,
		Bytes:       total,
		Seconds:     time.Since(start).Seconds(),
		Failed:      failed.Load(),
		Retried:     retried.Load(),
		BehindAtEnd: behind.Seconds(),
	}
	if err, ok := firstErr.Load().(error); ok {
		return s, fmt.Errorf("%d of %d requests failed, first: %w", s.Failed, s.Batches, err)
	}
	return s, nil
}

// statusError is a response that was not a success.
type statusError struct {
	endpoint string
	code     int
	status   string
}

func (e *statusError) Error() string { return e.endpoint + ": " + e.status }

// retryable says whether an OTLP exporter would send the request again: no response at
// all (the collector is down or restarting), or a status OTLP/HTTP marks as retryable.
func retryable(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		switch se.code {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	return true
}

func post(client *http.Client, endpoint string, body []byte) error {
	resp, err := client.Post(endpoint, "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode/100 != 2 {
		return &statusError{endpoint, resp.StatusCode, resp.Status}
	}
	return nil
}

// readAll returns every message of every input, directories read file by file in name order.
func readAll(inputs []string) ([][]byte, error) {
	var files []string
	for _, in := range inputs {
		st, err := os.Stat(in)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, in)
			continue
		}
		entries, err := os.ReadDir(in)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, e := range entries {
			if e.Type().IsRegular() {
				names = append(names, filepath.Join(in, e.Name()))
			}
		}
		sort.Strings(names)
		files = append(files, names...)
	}
	var batches [][]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		msgs, err := split(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		batches = append(batches, msgs...)
	}
	return batches, nil
}

// split cuts length-prefixed messages apart.
func split(data []byte) ([][]byte, error) {
	var out [][]byte
	for at := 0; at < len(data); {
		if len(data)-at < 4 {
			return nil, fmt.Errorf("byte %d: truncated length prefix", at)
		}
		n := int(binary.BigEndian.Uint32(data[at:]))
		if len(data)-at-4 < n {
			return nil, fmt.Errorf("byte %d: truncated message", at)
		}
		out = append(out, data[at+4:at+4+n])
		at += 4 + n
	}
	return out, nil
}

// source hands out the batches to send, made when they are sent.
type source struct {
	len func() int
	get func(i int) []byte
}

// loop sends the batches `loops` times over, loop k with k XORed into the first four bytes
// of every trace id (big-endian), so that each loop sends new traces with the same shapes
// and the same violations. Copies are made as batches are sent, so memory holds one loop.
func loop(batches [][]byte, loops int) source {
	return source{
		len: func() int { return len(batches) * loops },
		get: func(i int) []byte {
			b, k := batches[i%len(batches)], i/len(batches)
			if k == 0 {
				return b
			}
			c := append([]byte(nil), b...)
			_ = retrace(c, uint32(k)) // checked for every batch before sending
			return c
		},
	}
}

// retrace XORs k into the first four bytes of every span's trace id of a TracesData (or
// ExportTraceServiceRequest) message, in place: resource_spans (1) → scope_spans (2) →
// spans (2) → trace_id (1).
func retrace(msg []byte, k uint32) error {
	var key [4]byte
	binary.BigEndian.PutUint32(key[:], k)
	path := []uint64{1, 2, 2}
	var walk func(b []byte, depth int) error
	walk = func(b []byte, depth int) error {
		for at := 0; at < len(b); {
			tag, n := binary.Uvarint(b[at:])
			if n <= 0 {
				return fmt.Errorf("bad field key at byte %d", at)
			}
			at += n
			field, wire := tag>>3, tag&7
			switch wire {
			case 0:
				_, n := binary.Uvarint(b[at:])
				if n <= 0 {
					return fmt.Errorf("bad varint at byte %d", at)
				}
				at += n
			case 1:
				at += 8
			case 5:
				at += 4
			case 2:
				l, n := binary.Uvarint(b[at:])
				if n <= 0 || uint64(len(b)-at-n) < l {
					return fmt.Errorf("bad length at byte %d", at)
				}
				at += n
				body := b[at : at+int(l)]
				switch {
				case depth < len(path) && field == path[depth]:
					if err := walk(body, depth+1); err != nil {
						return err
					}
				case depth == len(path) && field == 1 && len(body) == 16:
					for i := range key {
						body[i] ^= key[i]
					}
				}
				at += int(l)
			default:
				return fmt.Errorf("unsupported wire type %d at byte %d", wire, at)
			}
			if at > len(b) {
				return fmt.Errorf("field runs past the end")
			}
		}
		return nil
	}
	return walk(msg, 0)
}
