package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

func frame(msgs ...string) []byte {
	var out []byte
	for _, m := range msgs {
		out = binary.BigEndian.AppendUint32(out, uint32(len(m)))
		out = append(out, m...)
	}
	return out
}

func TestSplitCutsMessagesAndRejectsTruncation(t *testing.T) {
	got, err := split(frame("abc", "", "de"))
	if err != nil || len(got) != 3 || string(got[0]) != "abc" || len(got[1]) != 0 || string(got[2]) != "de" {
		t.Fatalf("split = %q, %v", got, err)
	}
	data := frame("abc")
	if _, err := split(data[:len(data)-1]); err == nil {
		t.Fatal("a truncated message was accepted")
	}
}

func TestSendPostsEveryBatchInOrderAndReportsFailures(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("content type %q", r.Header.Get("Content-Type"))
		}
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
		if string(b) == "bad" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	s, err := send(srv.URL, loop([][]byte{[]byte("a"), []byte("b"), []byte("c")}, 1), 1000, 1, 0)
	if err != nil || s.Batches != 3 || s.Failed != 0 || s.Bytes != 3 {
		t.Fatalf("send = %+v, %v", s, err)
	}
	if len(got) != 3 || got[0] != "a" || got[2] != "c" {
		t.Fatalf("server saw %q", got)
	}
	s, err = send(srv.URL, loop([][]byte{[]byte("ok"), []byte("bad")}, 1), 1000, 2, 0)
	if err == nil || s.Failed != 1 {
		t.Fatalf("a 503 was not reported: %+v, %v", s, err)
	}
}

func TestSendRetriesWhatAnExporterWouldRetry(t *testing.T) {
	var mu sync.Mutex
	refused := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case string(b) == "busy" && refused["busy"] < 2: // refused twice, then taken
			refused["busy"]++
			w.WriteHeader(http.StatusServiceUnavailable)
		case string(b) == "malformed":
			refused["malformed"]++
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	s, err := send(srv.URL, loop([][]byte{[]byte("busy")}, 1), 1000, 1, 5*time.Second)
	if err != nil || s.Failed != 0 || s.Retried != 2 {
		t.Fatalf("a 503 is retried until taken: %+v, %v", s, err)
	}
	s, err = send(srv.URL, loop([][]byte{[]byte("malformed")}, 1), 1000, 1, 5*time.Second)
	if err == nil || s.Failed != 1 || refused["malformed"] != 1 {
		t.Fatalf("a 400 is not retried: %+v, %v, sent %d times", s, err, refused["malformed"])
	}
}

// field encodes one length-delimited protobuf field.
func field(num uint64, body []byte) []byte {
	out := binary.AppendUvarint(nil, num<<3|2)
	out = binary.AppendUvarint(out, uint64(len(body)))
	return append(out, body...)
}

func TestLoopRewritesOnlyTraceIDsAndKeepsTheFirstLoop(t *testing.T) {
	traceID := bytes.Repeat([]byte{0xab}, 16)
	spanID := bytes.Repeat([]byte{0xcd}, 8)
	span := append(field(1, traceID), field(2, spanID)...)
	span = append(span, 0x40, 0x05) // kind = 5, a varint field that must be skipped
	msg := field(1, append(field(1, []byte("resource")), field(2, field(2, span))...))
	src := loop([][]byte{msg}, 3)
	var got [][]byte
	for i := range src.len() {
		got = append(got, src.get(i))
	}
	if len(got) != 3 || !bytes.Equal(got[0], msg) {
		t.Fatalf("loop 0 must be the batch as read")
	}
	for k, b := range got[1:] {
		want := append([]byte(nil), traceID...)
		want[3] ^= byte(k + 1)
		if !bytes.Contains(b, want) || !bytes.Contains(b, spanID) || len(b) != len(msg) {
			t.Fatalf("loop %d: trace id not rewritten as expected or other bytes changed: %x", k+1, b)
		}
	}
	if err := retrace([]byte{0x0a, 0x05, 0x01}, 1); err == nil {
		t.Fatal("a truncated message must be an error")
	}
}
