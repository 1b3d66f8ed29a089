// Runs tasks one at a time, in submission order, on any Executor the app chooses (the main
// thread, a pool): the delivery order of events is the order the client produced them.
package io.wsserver.client

import java.util.ArrayDeque
import java.util.concurrent.Executor

/** The serial executor of `java.util.concurrent.Executor`'s documentation. */
class SerialExecutor(private val target: Executor) : Executor {
    private val tasks = ArrayDeque<Runnable>()
    private var active: Runnable? = null

    @Synchronized
    override fun execute(task: Runnable) {
        tasks.add(Runnable {
            try {
                task.run()
            } finally {
                scheduleNext()
            }
        })
        if (active == null) scheduleNext()
    }

    @Synchronized
    private fun scheduleNext() {
        active = tasks.poll()
        val next = active ?: return
        target.execute(next)
    }
}
