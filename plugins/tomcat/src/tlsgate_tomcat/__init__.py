"""tlsgate endpoint plugin: Apache Tomcat 9/10/11."""
