#include "core/host_worker.h"

#include <omp.h>

#include <doctest/doctest.h>
#include <stdexcept>
#include <vector>

namespace qtts {

TEST_CASE("host worker: jobs run in order, with the team size asked for; errors reach the job's future") {
    std::vector<int> order, teams;  // written by the worker only, read after its futures are done
    std::vector<std::future<void>> done;
    {
        HostWorker worker;
        for (int i = 0; i < 6; ++i)
            done.push_back(worker.submit([&order, &teams, i] {
                order.push_back(i);
                teams.push_back(omp_get_max_threads());
            }, i % 2 ? 1 : 0));
        auto failed = worker.submit([] { throw std::runtime_error("job failed"); });
        auto after = worker.submit([&order] { order.push_back(99); });
        CHECK_THROWS_WITH(failed.get(), "job failed");
        after.get();  // the worker goes on after a failed job
        done.push_back(worker.submit([&order] { order.push_back(100); }));
    }  // the destructor runs what is queued before it joins
    for (auto& d : done) CHECK(d.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5, 99, 100});
    const int usual = omp_get_max_threads();
    CHECK(teams == std::vector<int>{usual, 1, usual, 1, usual, 1});
}

}  // namespace qtts
