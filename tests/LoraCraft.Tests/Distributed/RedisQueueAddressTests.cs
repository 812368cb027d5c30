using LoraCraft.Redis;
using Xunit;

namespace LoraCraft.Tests.Distributed;

public class RedisQueueAddressTests
{
    [Fact]
    public void AddressesParseWithPasswordDatabaseTlsAndPrefix()
    {
        var a = RedisQueueAddress.Parse("redis://:p%40ss@10.0.0.5:6380/2?ssl=true&prefix=studio");
        Assert.Equal(("10.0.0.5", 6380, 2, (string?)null, "p@ss", true, "studio"), (a.Host, a.Port, a.Database, a.User, a.Password, a.Ssl, a.Prefix));
        Assert.DoesNotContain("p@ss", a.ToString());
        var b = RedisQueueAddress.Parse("rediss://bot:pw@queue.local");
        Assert.Equal(("queue.local", 6379, 0, "bot", "pw", true, "loracraft"), (b.Host, b.Port, b.Database, b.User, b.Password, b.Ssl, b.Prefix));
        Assert.Equal("redis://127.0.0.1:6379/0", RedisQueueAddress.Parse("redis://127.0.0.1").ToString());
    }

    [Theory]
    [InlineData("http://127.0.0.1:6379")]
    [InlineData("redis://127.0.0.1:6379/x")]
    [InlineData("redis://127.0.0.1:6379/0?timeout=3")]
    [InlineData("127.0.0.1:6379")]
    public void BadAddressesAreRefusedWithoutEchoingAPassword(string text)
    {
        var e = Assert.Throws<UserErrorException>(() => RedisQueueAddress.Parse(text));
        Assert.Contains("queue address", e.Message);
    }

    [Fact]
    public void AnUnreachableQueueIsABusyErrorNamingTheAddress()
    {
        // port 1 on loopback: nothing listens there
        var e = Assert.Throws<UserErrorException>(() => RedisQueueAddress.Parse("redis://:secret@127.0.0.1:1").Connect());
        Assert.Equal(ErrorKind.Busy, e.Kind);
        Assert.Contains("127.0.0.1:1", e.Message);
        Assert.DoesNotContain("secret", e.Message);
    }
}
