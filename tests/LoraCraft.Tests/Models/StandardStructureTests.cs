using LoraCraft.Models.Loading;
using LoraCraft.Models.UNet;
using Xunit;

namespace LoraCraft.Tests.Models;

/// <summary>
/// The structure check that refuses incomplete checkpoints. (The standard configs themselves are
/// validated by the full-size layout tests: random checkpoints built from them equal the reference layouts.)
/// </summary>
public class StandardStructureTests
{
    [Fact]
    public void AMissingLevelOfAttentionIsNamed()
    {
        var broken = UNetConfig.Sd15() with { TransformerDepth = [0, 1, 1, 0] };
        Assert.Equal("transformer depths [0,1,1,0] stored, [1,1,1,0] declared", ModelConfigs.StructureDiffers(broken, UNetConfig.Sd15()));
    }
}
