// What `make -C sdk/android` ships besides the test jars: the SDK jar (with its version in the
// manifest), a sources jar, a Maven POM (coordinates, OkHttp 3.x / org.json / kotlin-stdlib, Apache-2.0)
// and the same three files in a Maven repository layout.
package io.wsserver.client

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import org.w3c.dom.Element
import java.io.File
import java.util.jar.JarFile
import javax.xml.parsers.DocumentBuilderFactory

class PackagingTest {
    private val version = Regex("^__version__ = \"(.+)\"$", RegexOption.MULTILINE)
        .find(File(ROOT, "wsserver/__init__.py").readText())!!.groupValues[1]
    private val dist = File(ROOT, "sdk/android/build/dist")
    private val name = "wsclient-android-$version"

    private fun Element.child(tag: String): Element =
        (0 until childNodes.length).map { childNodes.item(it) }.filterIsInstance<Element>().first { it.tagName == tag }

    private fun Element.children(tag: String): List<Element> =
        (0 until childNodes.length).map { childNodes.item(it) }.filterIsInstance<Element>().filter { it.tagName == tag }

    @Test
    fun thePomNamesTheArtifactItsDependenciesAndTheLicense() {
        val pom = DocumentBuilderFactory.newInstance().apply { isNamespaceAware = true }
            .newDocumentBuilder().parse(File(dist, "$name.pom")).documentElement
        assertEquals("project", pom.tagName)
        assertEquals(listOf("4.0.0", "io.wsserver", "wsclient-android", version, "jar"),
            listOf("modelVersion", "groupId", "artifactId", "version", "packaging").map { pom.child(it).textContent })
        val deps = pom.child("dependencies").children("dependency").associate {
            "${it.child("groupId").textContent}:${it.child("artifactId").textContent}" to it.child("version").textContent
        }
        assertEquals(setOf("com.squareup.okhttp3:okhttp", "org.json:json", "org.jetbrains.kotlin:kotlin-stdlib"), deps.keys)
        assertTrue("OkHttp 3.x: $deps", deps.getValue("com.squareup.okhttp3:okhttp").startsWith("3."))
        assertEquals("Apache-2.0", pom.child("licenses").child("license").child("name").textContent)
    }

    @Test
    fun theJarsCarryTheSdkAndTheRepositoryLayoutHoldsThem() {
        JarFile(File(dist, "$name.jar")).use { jar ->
            for (entry in listOf("io/wsserver/client/WsClient.class", "io/wsserver/client/FileOutboxStore.class",
                    "io/wsserver/client/SuspendKt.class", "META-INF/main.kotlin_module")) {
                assertTrue(entry, jar.getEntry(entry) != null)
            }
            assertTrue("tests stay out", jar.entries().toList().none { it.name.endsWith("Test.class") })
            assertEquals(version, jar.manifest.mainAttributes.getValue("Implementation-Version"))
        }
        JarFile(File(dist, "$name-sources.jar")).use { assertTrue(it.getEntry("io/wsserver/client/WsClient.kt") != null) }
        val repo = File(ROOT, "sdk/android/build/m2/io/wsserver/wsclient-android/$version")
        for (file in listOf("$name.jar", "$name-sources.jar", "$name.pom")) {
            assertArrayEquals(file, File(dist, file).readBytes(), File(repo, file).readBytes())
        }
    }
}
