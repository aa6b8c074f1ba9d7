"""Unit tests of bench/report.py on recorded outputs (bench/testdata/). No timing assertions.

Run from the repository root:  python3 -m unittest bench/test_report.py
"""

import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no bench/__pycache__ in the work tree

import report  # noqa: E402

DATA = os.path.join(HERE, "testdata")


def sample(name):
    with open(os.path.join(DATA, name)) as f:
        return f.read()


class WrkTest(unittest.TestCase):
    def test_keepalive_output(self):
        r = report.parse_wrk(sample("wrk_keepalive.txt"))
        self.assertEqual(r["requests"], 60769)
        self.assertAlmostEqual(r["seconds"], 1.10)
        self.assertAlmostEqual(r["rps"], 55309.41)
        self.assertAlmostEqual(r["p50_ms"], 0.615)
        self.assertAlmostEqual(r["p99_ms"], 5.19)
        self.assertEqual(r["socket_errors"], 0)
        self.assertEqual(r["non_2xx"], 0)

    def test_connection_close_output(self):
        r = report.parse_wrk(sample("wrk_conn_close.txt"))
        self.assertEqual(r["requests"], 24962)
        self.assertAlmostEqual(r["p50_ms"], 2.03)
        self.assertAlmostEqual(r["p99_ms"], 3.47)

    def test_errors_and_non_2xx(self):
        r = report.parse_wrk(sample("wrk_errors.txt"))
        self.assertEqual(r["requests"], 16543)
        self.assertEqual(r["socket_errors"], 16544)
        self.assertEqual(r["non_2xx"], 16543)
        self.assertAlmostEqual(r["p50_ms"], 0.148)
        self.assertAlmostEqual(r["p99_ms"], 3.84)

    def test_latency_units(self):
        self.assertAlmostEqual(report._duration_ms("345.67us"), 0.34567)
        self.assertAlmostEqual(report._duration_ms("1.20ms"), 1.2)
        self.assertAlmostEqual(report._duration_ms("2.00s"), 2000.0)
        self.assertAlmostEqual(report._duration_ms("1.00m"), 60000.0)

    def test_failed_run_is_none(self):
        text = "unable to connect to 127.0.0.1:1 Connection refused\n"
        self.assertIsNone(report.parse_wrk(text))

    def test_without_latency_flag(self):
        text = sample("wrk_keepalive.txt").split("  Latency Distribution")[0] + (
            "  60769 requests in 1.10s, 11.76MB read\nRequests/sec:  55309.41\n")
        r = report.parse_wrk(text)
        self.assertEqual(r["requests"], 60769)
        self.assertIsNone(r["p99_ms"])


class H2loadTest(unittest.TestCase):
    def test_output(self):
        r = report.parse_h2load(sample("h2load.txt"))
        self.assertEqual(r["requests"], 63665)
        self.assertAlmostEqual(r["rps"], 63665.0)
        self.assertAlmostEqual(r["seconds"], 1.01)
        self.assertAlmostEqual(r["mean_ms"], 7.52)
        self.assertEqual(r["socket_errors"], 0)

    def test_failures_lower_the_rate(self):
        text = sample("h2load.txt").replace(
            "63665 done, 63665 succeeded, 0 failed", "63665 done, 31832 succeeded, 31833 failed")
        r = report.parse_h2load(text)
        self.assertEqual(r["requests"], 31832)
        self.assertEqual(r["socket_errors"], 31833)
        self.assertLess(r["rps"], 63665.0 / 2 + 1)

    def test_connection_refused(self):
        self.assertIsNone(report.parse_h2load("starting benchmark...\nNo protocol negotiated\n"))


class Iperf3Test(unittest.TestCase):
    def test_json(self):
        r = report.parse_iperf3(sample("iperf3.json"))
        self.assertGreater(r["gbps"], 0)
        self.assertGreater(r["bytes"], 0)
        self.assertGreater(r["seconds"], 0)
        # bits_per_second / 1e9, straight from end.sum_received
        import json
        rec = json.loads(sample("iperf3.json"))["end"]["sum_received"]
        self.assertAlmostEqual(r["gbps"], rec["bits_per_second"] / 1e9)
        self.assertEqual(r["bytes"], rec["bytes"])

    def test_error_document(self):
        self.assertIsNone(report.parse_iperf3(
            '{"start": {}, "intervals": [], "end": {}, '
            '"error": "unable to connect to server: Connection refused"}'))

    def test_not_json(self):
        self.assertIsNone(report.parse_iperf3("iperf3: error - unable to connect\n"))


class ProcTest(unittest.TestCase):
    def test_stat_utime_plus_stime(self):
        # fields 14 and 15 of the recorded line are 27 and 7
        self.assertEqual(report.parse_proc_stat(sample("proc_stat.txt")), 34)

    def test_stat_command_name_with_spaces_and_parens(self):
        # comm is "we ir) (x"; fields 14 and 15 are 3 and 0
        self.assertEqual(report.parse_proc_stat(sample("proc_stat_odd_comm.txt")), 3)

    def test_vmrss(self):
        self.assertEqual(report.parse_vmrss_kib(sample("proc_status.txt")), 13528)
        self.assertEqual(report.parse_vmrss_kib("Name:\tkthreadd\nState:\tS\n"), 0)

    def test_live_readers_on_this_process(self):
        self.assertGreaterEqual(report.cpu_ticks([os.getpid()]), 0)
        self.assertGreater(report.rss_kib([os.getpid()]), 0)
        self.assertEqual(report.cpu_ticks(["999999999"]), 0)  # gone: counts as 0


class ReportTest(unittest.TestCase):
    """A whole summarize pass over a synthetic runs.tsv pointing at the recorded samples."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        d = self.dir.name
        os.mkdir(os.path.join(d, "raw"))
        for name in ("wrk_keepalive.txt", "wrk_conn_close.txt", "iperf3.json", "h2load.txt"):
            with open(os.path.join(d, "raw", name), "w") as f:
                f.write(sample(name))
        with open(os.path.join(d, "raw", "idle-weir.txt"), "w") as f:
            f.write("wanted=100\nestablished=100\nfailed=0\nrss_before_kib=1000\n"
                    "rss_after_kib=3000\n")
        with open(os.path.join(d, "raw", "idle-haproxy.txt"), "w") as f:
            f.write("wanted=100\nestablished=100\nfailed=0\nrss_before_kib=1000\n"
                    "rss_after_kib=2000\n")
        with open(os.path.join(d, "raw", "broken.txt"), "w") as f:
            f.write("unable to connect\n")
        rows = [
            # phase scenario target round tool raw proxy_ticks backend_ticks
            ("1", "tcp_rr", "direct", "1", "wrk", "raw/wrk_keepalive.txt", "-", "30"),
            ("1", "tcp_rr", "weir", "1", "wrk", "raw/wrk_keepalive.txt", "40", "30"),
            ("1", "tcp_rr", "haproxy", "1", "wrk", "raw/wrk_keepalive.txt", "50", "30"),
            ("1", "tcp_rr", "nginx", "1", "wrk", "raw/broken.txt", "-", "-"),
            ("1", "tcp_rr", "weir", "2", "wrk", "raw/wrk_conn_close.txt", "20", "10"),
            ("1", "tcp_bulk", "weir", "1", "iperf3", "raw/iperf3.json", "100", "100"),
            ("1", "h2", "haproxy", "1", "h2load", "raw/h2load.txt", "60", "30"),
            ("1", "idle_tcp", "weir", "1", "idle", "raw/idle-weir.txt", "-", "-"),
            ("1", "idle_tcp", "haproxy", "1", "idle", "raw/idle-haproxy.txt", "-", "-"),
        ]
        with open(os.path.join(d, "runs.tsv"), "w") as f:
            for row in rows:
                f.write("\t".join(row) + "\n")
        with open(os.path.join(d, "skips.tsv"), "w") as f:
            f.write("1\th2\tweir\tweir: https listener not available in this build\n")
        with open(os.path.join(d, "meta.txt"), "w") as f:
            f.write("machine=nproc 2, kernel test\n")

    def tearDown(self):
        self.dir.cleanup()

    def test_cpu_per_request(self):
        runs = report.load_runs(self.dir.name, clk_tck=100)
        weir1 = [r for r in runs if r["target"] == "weir" and r["scenario"] == "tcp_rr"][0]
        # 40 ticks = 0.4 s of CPU over 60,769 requests
        self.assertAlmostEqual(weir1["cpu_us"], 0.4e6 / 60769)
        direct = [r for r in runs if r["target"] == "direct"][0]
        self.assertIsNone(direct["cpu_us"])
        self.assertAlmostEqual(direct["server_us"], 0.3e6 / 60769)
        broken = [r for r in runs if r["target"] == "nginx"][0]
        self.assertFalse(broken["ok"])

    def test_backend_and_core_total(self):
        runs = report.load_runs(self.dir.name, clk_tck=100)
        weir1 = [r for r in runs if r["target"] == "weir" and r["scenario"] == "tcp_rr"][0]
        self.assertAlmostEqual(weir1["server_us"], 0.3e6 / 60769)
        self.assertAlmostEqual(weir1["total_us"], 0.7e6 / 60769)
        # "direct" has no proxy: its one CPU figure is the backend's, and the total.
        direct = [r for r in runs if r["target"] == "direct"][0]
        self.assertAlmostEqual(direct["total_us"], direct["server_us"])
        # no backend figure, no total
        cpu = report._cpu_per_unit("weir", 1.0, None, 1000)
        self.assertAlmostEqual(cpu["cpu_us"], 1000.0)
        self.assertIsNone(cpu["server_us"])
        self.assertIsNone(cpu["total_us"])

    def test_idle_kib_per_connection(self):
        runs = report.load_runs(self.dir.name, clk_tck=100)
        weir = [r for r in runs if r["scenario"] == "idle_tcp" and r["target"] == "weir"][0]
        self.assertAlmostEqual(weir["kib_per_conn"], 20.0)

    def test_median_and_spread(self):
        runs = report.load_runs(self.dir.name, clk_tck=100)
        weir = [r for r in runs if r["target"] == "weir" and r["scenario"] == "tcp_rr"]
        s = report.summarize_target(weir)
        self.assertEqual(s["ok_rounds"], 2)
        self.assertAlmostEqual(s["rps"], (55309.41 + 22677.14) / 2)
        self.assertEqual(s["rps_spread"], (22677.14, 55309.41))

    def test_table(self):
        text = report.build_report(report.load_runs(self.dir.name, clk_tck=100),
                                   report.load_meta(self.dir.name),
                                   report.load_skips(self.dir.name))
        self.assertIn("machine: nproc 2, kernel test", text)
        self.assertIn("| *weir ÷ HAProxy* |", text)
        self.assertIn("| NGINX | failed", text)
        self.assertIn("skipped weir: weir: https listener not available in this build", text)
        self.assertIn("### TCP (L4) bulk", text)
        self.assertIn("Idle keep-alive connections through a TCP listener", text)
        # weir 20 KiB/conn against HAProxy 10 KiB/conn
        self.assertIn("| *weir ÷ HAProxy* | | | | 2.00 |", text)
        self.assertIn("| proxy + backend µs/req |", text)
        # the direct row shows no proxy CPU, only the backend's (30 ticks over 60,769 req.)
        self.assertIn(f"| – | – | {0.3e6 / 60769:.1f} | {0.3e6 / 60769:.1f} | 0 |", text)
        # bulk: as much iperf3 server CPU as proxy CPU, so the sum is twice the proxy's
        bulk = [line for line in text.splitlines() if line.startswith("| weir | ")][-1]
        cells = [c.strip().replace(",", "") for c in bulk.split("|")[1:-1]]
        self.assertAlmostEqual(float(cells[6]) * 2, float(cells[7]), delta=0.11)

    def test_median_helpers(self):
        self.assertEqual(report._median([3, None, 1, 2]), 2)
        self.assertIsNone(report._median([None]))
        self.assertEqual(report._ratio(1.0, 2.0), "0.50")
        self.assertEqual(report._ratio(1.0, None), "–")


class FreePortsTest(unittest.TestCase):
    def test_ports_are_distinct_and_bindable(self):
        ports = report.free_ports(3)
        self.assertEqual(len(set(ports)), 3)
        for p in ports:
            self.assertGreaterEqual(p, 1024)


if __name__ == "__main__":
    unittest.main()
