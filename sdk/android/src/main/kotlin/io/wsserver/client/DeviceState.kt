// The app's lifecycle and the device's networks as the client sees them: a small state machine
// fed by ProcessLifecycleOwner and ConnectivityManager.NetworkCallback (README), free of android.*
// so that its rules are tested on the JVM. Offline is only a hint: nothing can latch the client shut.
package io.wsserver.client

/** What the client does after a lifecycle or connectivity input. */
enum class Nudge {
    /** Nothing changes. */
    NONE,
    /** A real wake: forget failures; reconnect soon (a short jittered delay), or probe an open link. */
    WAKE,
    /** The open link may sit on a network that is gone: probe it (a pending reconnect keeps its time). */
    PROBE,
    /** Close the link until the next [WAKE] (`pauseInBackground`). */
    PAUSE
}

/**
 * Foreground/background and the set of available networks, per network so that Android's
 * Ethernet → Wi-Fi sequence (`onAvailable(wifi)` then `onLost(ethernet)`) ends online.
 *
 * - Before any network input the device counts as online ("not told").
 * - [offline] (no network left) is a hint: reconnect attempts go on at the backoff cap, a
 *   foreground wakes the client anyway, and a link that reaches `auth_ok` ([onLinkUp]) proves the
 *   device online again.
 * - [paused] only with `pauseInBackground`, while in the background: no attempts at all.
 *
 * Not thread-safe: [WsClient] drives it under its lock.
 */
class DeviceState(private val pauseInBackground: Boolean = false) {
    /** Null: not told about networks (online). */
    private var networks: LinkedHashSet<Any>? = null

    var foreground = true
        private set

    /** No network left, as far as the app told. */
    val offline: Boolean get() = networks?.isEmpty() == true

    /** In the background with `pauseInBackground`: the client does not connect. */
    val paused: Boolean get() = pauseInBackground && !foreground

    /** Networks the app reported available and not yet lost. */
    val knownNetworks: Int get() = networks?.size ?: 0

    fun onForeground(): Nudge {
        foreground = true
        return Nudge.WAKE
    }

    fun onBackground(): Nudge {
        foreground = false
        return if (pauseInBackground) Nudge.PAUSE else Nudge.NONE
    }

    /** `NetworkCallback.onAvailable(network)`: a network the device did not have is a wake. */
    fun onNetworkAvailable(network: Any): Nudge {
        val known = networks ?: LinkedHashSet<Any>().also { networks = it }
        return if (known.add(network)) Nudge.WAKE else Nudge.NONE
    }

    /** `NetworkCallback.onLost(network)`: offline when it was the last one; else probe the link. */
    fun onNetworkLost(network: Any): Nudge {
        val known = networks ?: return Nudge.PROBE // not tracking: another network may carry the link
        if (!known.remove(network)) return Nudge.NONE
        return if (known.isEmpty()) Nudge.NONE else Nudge.PROBE
    }

    /** The whole-device hint (`onNetworkChanged(true/false)`): true wakes, false means no network. */
    fun onNetworkChanged(available: Boolean): Nudge {
        if (available) {
            networks = null
            return Nudge.WAKE
        }
        networks = LinkedHashSet()
        return Nudge.NONE
    }

    /** A link reached `auth_ok`: whatever the callbacks said, the device is online. */
    fun onLinkUp() {
        if (offline) networks = null
    }
}
