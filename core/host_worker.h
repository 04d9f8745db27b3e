// One host thread that runs jobs in the order they were submitted. The GPU engine's host work that overlaps the
// GPU (the text projection) runs here, so a single OpenMP team does all of it: with two teams (the request
// thread's and a thread per request) each team's idle workers spin on the cores the other one needs (libgomp
// spins ~10 ms after every parallel region), which made the text rows 2-3x slower on a 16-core host.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

namespace qtts {

class HostWorker {
public:
    HostWorker();  // throws std::system_error when no thread can be created
    HostWorker(const HostWorker&) = delete;
    HostWorker& operator=(const HostWorker&) = delete;
    ~HostWorker();  // runs the jobs already queued, then joins

    // Queues `job`; the future gives its end or rethrows its exception. `omp_threads` is the size of the
    // OpenMP team for the job's parallel regions (≤ 0: the usual omp_get_max_threads()).
    std::future<void> submit(std::function<void()> job, int omp_threads = 0);

private:
    void loop();
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::pair<std::packaged_task<void()>, int>> jobs_;
    bool stopping_ = false;
    int default_threads_ = 1;
    std::thread thread_;  // last: starts once the members above exist
};

}  // namespace qtts
