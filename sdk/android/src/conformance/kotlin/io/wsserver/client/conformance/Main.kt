// `sdk/android/conformance`: the SDK conformance client of CONTRACT §7, built only on the public
// API of io.wsserver.client; prints one JSON object per line for a black-box harness to check.
package io.wsserver.client.conformance

import io.wsserver.client.ChannelEvent
import io.wsserver.client.ClientEvent
import io.wsserver.client.ClientListener
import io.wsserver.client.Closed
import io.wsserver.client.Connected
import io.wsserver.client.Connecting
import io.wsserver.client.PublishCallback
import io.wsserver.client.PublishResult
import io.wsserver.client.Reconnecting
import io.wsserver.client.Snapshot
import io.wsserver.client.Subscribed
import io.wsserver.client.TokenProvider
import io.wsserver.client.TokenReason
import io.wsserver.client.WsClient
import io.wsserver.client.WsClientException
import org.json.JSONObject
import java.io.File
import java.util.concurrent.CountDownLatch
import kotlin.system.exitProcess

private class Args(argv: Array<String>) {
    var url = ""
    var tokenFile = ""
    val channels = ArrayList<String>()
    var untilSeq = -1L
    var publishChannel: String? = null
    var publishCount = 0

    init {
        var i = 0
        while (i < argv.size) {
            val name = argv[i]
            val value = argv.getOrNull(i + 1) ?: usage("$name needs a value")
            when (name) {
                "--url" -> url = value
                "--token-file" -> tokenFile = value
                "--channel" -> channels.add(value)
                "--until-seq" -> untilSeq = value.toLongOrNull() ?: usage("--until-seq needs a number")
                "--publish-channel" -> publishChannel = value
                "--publish-count" -> publishCount = value.toIntOrNull() ?: usage("--publish-count needs a number")
                else -> usage("unknown option $name")
            }
            i += 2
        }
        if (url.isEmpty() || tokenFile.isEmpty() || channels.isEmpty() || untilSeq < 0) {
            usage("--url, --token-file, --channel and --until-seq are required")
        }
        if (publishCount > 0 && publishChannel == null) usage("--publish-count needs --publish-channel")
    }
}

private fun usage(problem: String): Nothing {
    System.err.println(problem)
    System.err.println(
        "usage: conformance --url ws://HOST:PORT/ws --token-file PATH --channel NAME [--channel NAME ...] " +
            "--until-seq N [--publish-channel NAME --publish-count M]"
    )
    exitProcess(2)
}

private fun emit(obj: JSONObject) = synchronized(System.out) {
    println(obj.toString())
    System.out.flush()
}

private fun line(key: String, value: Any): JSONObject = JSONObject().put(key, value)

fun main(argv: Array<String>) {
    val args = Args(argv)
    val reached = HashSet<String>()
    val finished = CountDownLatch(1)
    var exitCode = 1
    var complete = false
    var published = args.publishCount == 0
    var lastState: String? = null
    lateinit var client: WsClient

    fun finishIfDone() {
        if (published && reached.containsAll(args.channels) && !complete) {
            complete = true
            client.close() // its Closed event prints the final lines
        }
    }

    fun check(channel: String, seq: Long) {
        if (seq >= args.untilSeq) reached.add(channel)
    }

    fun publish(index: Int) {
        val channel = args.publishChannel ?: return
        client.publish(channel, "conformance.publish", JSONObject().put("index", index), object : PublishCallback {
            override fun onPublished(result: PublishResult) {
                emit(line("published", JSONObject().put("index", index).put("seq", result.seq)))
                if (index + 1 < args.publishCount) {
                    publish(index + 1)
                } else {
                    published = true
                    finishIfDone()
                }
            }

            override fun onFailed(error: WsClientException) = Unit // the Closed event reports why
        })
    }

    val tokens = object : TokenProvider {
        override fun token(reason: TokenReason): String? = File(args.tokenFile).readText().trim().ifEmpty { null }
    }
    // Every callback runs on the client's single delivery thread: no locking needed here.
    val listener = object : ClientListener {
        override fun onEvent(event: ClientEvent) {
            val state = when (event) {
                is Connecting -> "connecting"
                is Connected -> "connected"
                is Reconnecting -> "reconnecting"
                is Closed -> "closed"
                else -> null
            }
            if (state != null && state != lastState) {
                lastState = state
                emit(line("state", state))
            }
            when (event) {
                is ChannelEvent -> {
                    val e = JSONObject().put("channel", event.channel).put("seq", event.seq).put("id", event.id).put("type", event.type)
                    emit(line("event", e))
                    check(event.channel, event.seq)
                }
                is Subscribed -> {
                    emit(line("recovery", JSONObject().put("channel", event.channel).put("mode", event.mode)))
                    if (event.mode == "reset" || event.mode == "none") check(event.channel, event.headSeq)
                }
                is Snapshot -> check(event.channel, event.seq)
                is Closed -> {
                    if (complete) {
                        emit(line("done", true))
                        exitCode = 0
                    } else {
                        emit(line("fatal", "closed ${event.code}: ${event.reason}"))
                    }
                    finished.countDown()
                }
                else -> Unit
            }
            if (event !is Closed) finishIfDone()
        }
    }
    client = WsClient(args.url, tokens, listener)
    for (channel in args.channels) client.subscribe(channel, 0L)
    client.start()
    if (args.publishCount > 0) publish(0)
    finished.await()
    System.out.flush()
    exitProcess(exitCode)
}
