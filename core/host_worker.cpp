#include "core/host_worker.h"

#include <omp.h>

namespace qtts {

HostWorker::HostWorker() : default_threads_(omp_get_max_threads()), thread_([this] { loop(); }) {}

HostWorker::~HostWorker() {
    {
        const std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
}

std::future<void> HostWorker::submit(std::function<void()> job, int omp_threads) {
    std::packaged_task<void()> task(std::move(job));
    std::future<void> done = task.get_future();
    {
        const std::lock_guard lock(mutex_);
        jobs_.emplace_back(std::move(task), omp_threads > 0 ? omp_threads : default_threads_);
    }
    wake_.notify_one();
    return done;
}

void HostWorker::loop() {
    for (;;) {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // stopping, nothing left
        auto [task, threads] = std::move(jobs_.front());
        jobs_.pop_front();
        lock.unlock();
        omp_set_num_threads(threads);  // this thread's own team size
        task();                        // an exception lands in the task's future
    }
}

}  // namespace qtts
